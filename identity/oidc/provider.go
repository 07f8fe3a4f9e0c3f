package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
)

// ErrUnavailable means the provider could not be reached or answered
// with something other than what it should: new logins cannot start.
var ErrUnavailable = errors.New("identity provider unavailable")

// discoveryRetry is how long a failed discovery is remembered before the
// next request tries again.
const discoveryRetry = 5 * time.Second

// Provider is the relying party for one configured provider. It is safe
// for concurrent use.
type Provider struct {
	cfg      ProviderConfig
	m        *Manager
	secret   string
	codec    *session.Codec
	client   *http.Client
	redirect *url.URL
	bearer   *bearerCache
	returns  *flow.Returns // where a login may return to

	mu      sync.Mutex
	disc    *discovered
	discErr error
	discAt  time.Time
}

// discovered is what the provider's discovery document told us, and the
// verifiers built on it.
type discovered struct {
	oauth      *oauth2.Config
	endSession string
	provider   *oidc.Provider
	keys       *keySet
	idTokens   *oidc.IDTokenVerifier
	logout     *oidc.IDTokenVerifier
	bearer     *oidc.IDTokenVerifier
}

// Name returns the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// ctx returns a context for a request to the provider: bounded by the
// configured timeout and carrying the provider's HTTP client for go-oidc
// and x/oauth2.
func (p *Provider) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, p.cfg.Timeout.Std())
	return oidc.ClientContext(ctx, p.client), cancel
}

// discover returns the discovery result, fetching it on first use. After
// a failure it answers ErrUnavailable without asking again for a few
// seconds. The result is kept until the configuration is reloaded.
func (p *Provider) discover(parent context.Context) (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return p.disc, nil
	}
	now := p.m.now()
	if p.discErr != nil && now.Sub(p.discAt) < discoveryRetry {
		return nil, p.discErr
	}
	ctx, cancel := p.ctx(parent)
	defer cancel()
	d, err := p.fetchDiscovery(ctx)
	if err != nil {
		p.discErr, p.discAt = fmt.Errorf("%w: %s: %w", ErrUnavailable, p.cfg.Name, err), now
		p.m.log.Warn("oidc discovery failed", "provider", p.cfg.Name, "issuer", p.cfg.Issuer, "error", err)
		return nil, p.discErr
	}
	p.disc, p.discErr = d, nil
	return d, nil
}

func (p *Provider) fetchDiscovery(ctx context.Context) (*discovered, error) {
	op, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var extra struct {
		JWKSURI    string `json:"jwks_uri"`
		EndSession string `json:"end_session_endpoint"`
	}
	if err := op.Claims(&extra); err != nil {
		return nil, err
	}
	if extra.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	d := &discovered{provider: op, endSession: extra.EndSession}
	if u, err := url.Parse(extra.EndSession); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		d.endSession = ""
	}
	d.oauth = &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.secret,
		Endpoint:     op.Endpoint(),
		RedirectURL:  p.cfg.RedirectURL,
		Scopes:       p.cfg.Scopes,
	}
	d.keys = newKeySet(extra.JWKSURI, p.client, p.m.now)
	skew := p.cfg.ClockSkew.Std()
	now := func() time.Time { return p.m.now().Add(-skew) }
	d.idTokens = oidc.NewVerifier(p.cfg.Issuer, d.keys, &oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: p.cfg.Algorithms, Now: now})
	d.logout = oidc.NewVerifier(p.cfg.Issuer, d.keys, &oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: p.cfg.Algorithms, Now: now})
	if b := p.cfg.Bearer; b != nil {
		d.bearer = oidc.NewVerifier(p.cfg.Issuer, d.keys, &oidc.Config{ClientID: b.Audience, SupportedSigningAlgs: b.Algorithms, Now: now})
	}
	return d, nil
}

// Available reports whether new logins can start: the provider's
// discovery document has been read, or can be now.
func (p *Provider) Available(ctx context.Context) bool {
	_, err := p.discover(ctx)
	return err == nil
}

// JWKSFetches returns how many times the provider's JWKS was fetched (0
// before discovery), for tests and diagnostics.
func (p *Provider) JWKSFetches() int {
	p.mu.Lock()
	d := p.disc
	p.mu.Unlock()
	if d == nil {
		return 0
	}
	return d.keys.Fetches()
}

// revocationKey derives a store key from a provider value (sid, sub):
// hashed, so it has a fixed size and a fixed case.
func (p *Provider) revocationKey(kind, v string) string {
	if v == "" {
		return ""
	}
	h := sha256.Sum256([]byte(v))
	return "oidc-" + kind + ":" + p.cfg.Name + ":" + hex.EncodeToString(h[:16])
}

// claimSet is the claims identity is read from.
type claimSet map[string]any

func (c claimSet) str(name string) string {
	s, _ := c[name].(string)
	return s
}

func (c claimSet) strs(name string) []string {
	switch v := c[name].(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func (c claimSet) time(name string) time.Time {
	if f, ok := c[name].(float64); ok && f > 0 && f < 1e11 {
		return time.Unix(int64(f), 0)
	}
	return time.Time{}
}

// ErrNoUser is a token without the configured user claim, or whose
// e-mail is not verified when the e-mail names the user.
var ErrNoUser = errors.New("token does not identify a user")

// subject builds the identity the claims establish.
func (p *Provider) subject(c claimSet) (*enforcement.Subject, error) {
	cl := p.cfg.Claims
	user := c.str(cl.User)
	if user == "" {
		return nil, ErrNoUser
	}
	if cl.User == "email" {
		if v, ok := c["email_verified"].(bool); ok && !v {
			return nil, fmt.Errorf("%w: email_verified is false", ErrNoUser)
		}
	}
	s := &enforcement.Subject{
		UserID: strings.ToLower(user),
		Email:  c.str(cl.Email),
		Groups: c.strs(cl.Groups),
		IdP:    p.cfg.Name,
		AMR:    c.strs("amr"),
		ACR:    c.str("acr"),
	}
	s.AuthTime = c.time("auth_time")
	if s.AuthTime.IsZero() {
		s.AuthTime = c.time("iat")
	}
	return s, nil
}

package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/posture"
)

// Endpoint paths every host answers (the callback path comes from each
// provider's redirect_url).
const (
	Prefix          = "/.portcullis/"
	StartPath       = "/.portcullis/oidc/start"
	LogoutPath      = "/.portcullis/logout"
	BackchannelPath = "/.portcullis/oidc/backchannel"
)

// Store is what the package needs of the posture store: the revocation
// checks every session decode makes, and a way to record revocations
// (logout, back-channel logout).
type Store interface {
	session.Revocations
	ApplyRevocations(ctx context.Context, batch []posture.RevocationEvent) ([]posture.Outcome, error)
}

// Options configures a [Manager].
type Options struct {
	Logger *slog.Logger
	// Store holds revocations. Required.
	Store Store
	// SessionKeys seal sessions and login state (session.LoadKeyFile).
	SessionKeys [][]byte
	// Session is the session lifetime configuration.
	Session session.Config
	// Hosts lists, per provider name, the hosts of the resources that log
	// in with it ("app.example.com", "*.example.com"). A login may only
	// return to one of them (or to the callback's host).
	Hosts map[string][]string
	// Ports reports whether the gateway serves a port; a return URL may
	// name only those (and the callback's). Nil: none but the default.
	Ports func(port int) bool
	// Handoffs carries logins to the host they started on; it is served
	// at [flow.HandoffPath] by whoever mounts the endpoints. Nil: a new
	// table.
	Handoffs *flow.Handoffs
	// Replay remembers back-channel logout token ids until they expire.
	// Nil: a table in memory, which is enough for one gateway; replicas
	// pass the store they share, so a token used on one is refused on all.
	Replay Replay
	// Transport, if set, carries requests to the providers (tests).
	Transport http.RoundTripper
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager is every configured provider and the endpoints they share.
type Manager struct {
	log       *slog.Logger
	store     Store
	box       *session.Box
	now       func() time.Time
	providers map[string]*Provider
	order     []*Provider
	byIssuer  map[string]*Provider
	handoffs  *flow.Handoffs
	sids      sidIndex
	jtis      Replay
}

// A Replay remembers one-time ids (here: logout token ids).
type Replay interface {
	// Seen records key as used until expires (now is the caller's
	// clock) and reports whether it was already recorded and still live.
	// An error means it could not answer: the token is refused.
	Seen(ctx context.Context, key string, expires, now time.Time) (bool, error)
}

// New builds the relying parties. It reads the client secrets; it makes
// no network request (discovery happens on first use).
func New(cfgs []ProviderConfig, opts Options) (*Manager, error) {
	m := &Manager{log: opts.Logger, store: opts.Store, now: opts.Now, providers: map[string]*Provider{}, byIssuer: map[string]*Provider{},
		jtis: opts.Replay}
	if m.jtis == nil {
		m.jtis = &jtiCache{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if opts.Store == nil {
		return nil, fmt.Errorf("oidc: no revocation store")
	}
	box, err := session.NewBox(opts.SessionKeys)
	if err != nil {
		return nil, err
	}
	m.box = box
	m.handoffs = opts.Handoffs
	if m.handoffs == nil {
		m.handoffs = flow.NewHandoffs(m.now)
	}
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	for i := range cfgs {
		c := cfgs[i]
		c.ApplyDefaults()
		secret, err := conf.ReadSecretFile(c.ClientSecretFile.String())
		if err != nil {
			return nil, conf.AtKey(fmt.Sprintf("[%d].client_secret_file", i), err)
		}
		codec, err := session.NewCodec(session.CookiePrefix+"-"+c.Name, opts.SessionKeys, opts.Session, opts.Store)
		if err != nil {
			return nil, err
		}
		redirect, _ := url.Parse(c.RedirectURL)
		p := &Provider{cfg: c, m: m, secret: strings.TrimSpace(string(secret.Bytes())), codec: codec, redirect: redirect, bearer: &bearerCache{}}
		p.client = &http.Client{Timeout: c.Timeout.Std(), Transport: opts.Transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		p.returns = flow.NewReturns(append([]string{redirect.Host}, opts.Hosts[c.Name]...), opts.Ports, false)
		m.providers[c.Name] = p
		m.order = append(m.order, p)
		m.byIssuer[c.Issuer] = p
	}
	return m, nil
}

// Provider returns the named provider, or nil.
func (m *Manager) Provider(name string) *Provider { return m.providers[name] }

// Handlers returns the endpoints to mount, by exact path. The handoff
// endpoint is not among them: it is shared with SAML ([flow.HandoffPath]).
func (m *Manager) Handlers() map[string]http.Handler {
	h := map[string]http.Handler{
		StartPath:       http.HandlerFunc(m.serveStart),
		LogoutPath:      flow.Logout(http.HandlerFunc(m.serveLogout)),
		BackchannelPath: http.HandlerFunc(m.serveBackchannel),
	}
	for _, p := range m.order {
		h[p.redirect.Path] = http.HandlerFunc(m.serveCallback)
	}
	return h
}

// randomString returns n random bytes as base64url.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sidIndex remembers which sessions each provider session (sid) opened,
// so that a back-channel logout by sid also closes their live requests.
type sidIndex struct {
	mu sync.Mutex
	m  map[string][]sidEntry
}

type sidEntry struct {
	session string
	user    string
	expires time.Time
}

const (
	maxIndexed = 100000
	// maxPending bounds the logout token ids remembered.
	maxPending = 10000
)

func (x *sidIndex) add(key string, e sidEntry, now time.Time) {
	if key == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = map[string][]sidEntry{}
	}
	if len(x.m) >= maxIndexed {
		for k, es := range x.m {
			if now.After(es[len(es)-1].expires) {
				delete(x.m, k)
			}
		}
		if len(x.m) >= maxIndexed {
			return
		}
	}
	es := x.m[key]
	if len(es) >= 64 {
		es = es[1:]
	}
	x.m[key] = append(es, e)
}

func (x *sidIndex) get(key string) []sidEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]sidEntry(nil), x.m[key]...)
}

// jtiCache remembers logout token ids until they expire (replay).
type jtiCache struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// Seen implements [Replay]; it never fails.
func (c *jtiCache) Seen(_ context.Context, jti string, exp, now time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]time.Time{}
	}
	if len(c.m) >= maxPending {
		for k, e := range c.m {
			if now.After(e) {
				delete(c.m, k)
			}
		}
	}
	if e, ok := c.m[jti]; ok && !now.After(e) {
		return true, nil
	}
	c.m[jti] = exp
	return false, nil
}

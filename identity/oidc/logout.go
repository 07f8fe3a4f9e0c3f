package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/posture"
)

const (
	// maxLogoutBody bounds a back-channel logout request.
	maxLogoutBody    = 64 << 10
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	revocationSource = "oidc"
)

// serveLogout ends the sessions of this host: each is revoked in the
// store (so every host sharing the login loses it), its cookie cleared,
// and the browser sent to the provider's end_session_endpoint when it has
// one, else to rd when that is an allowed address, else to a page. It is
// mounted behind [flow.Logout]: only a same-origin POST reaches it.
func (m *Manager) serveLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	now := m.now()
	var ended *Provider
	for _, p := range m.order {
		v, ok := sessionCookie(r, p)
		if !ok {
			continue
		}
		p.codec.Clear(w)
		s, err := p.codec.Open(v, now)
		if err != nil {
			continue
		}
		if err := m.revoke(r.Context(), posture.Revocation{Kind: posture.RevokeSession, Session: s.Subject.SessionID, User: s.Subject.UserID, ExpiresAt: s.Expires}); err != nil {
			m.log.Error("revoking session at logout", "provider", p.cfg.Name, "error", err)
		}
		m.log.Info("oidc logout", "provider", p.cfg.Name, "user", s.Subject.UserID, "session_id", s.Subject.SessionID)
		if ended == nil {
			ended = p
		}
	}
	var rd *flow.Target
	if raw := r.URL.Query().Get("rd"); raw != "" {
		for _, p := range m.order {
			if t, err := p.returns.Check(raw, requestBase(r)); err == nil {
				rd = t
				break
			}
		}
	}
	if ended != nil {
		if d, err := ended.discover(r.Context()); err == nil && d.endSession != "" {
			u, _ := url.Parse(d.endSession)
			q := u.Query()
			q.Set("client_id", ended.cfg.ClientID)
			if ended.cfg.PostLogoutRedirectURL != "" {
				q.Set("post_logout_redirect_uri", ended.cfg.PostLogoutRedirectURL)
			}
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	if rd != nil {
		http.Redirect(w, r, rd.String(), http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	signedOut.Execute(w, nil)
}

var signedOut = template.Must(template.New("").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><h1 id="signed-out">You are signed out.</h1></body></html>
`))

func sessionCookie(r *http.Request, p *Provider) (string, bool) {
	return session.CookieValue(r.Header, p.codec.Name())
}

// revoke stores one revocation made by this package.
func (m *Manager) revoke(ctx context.Context, rev posture.Revocation) error {
	now := m.now()
	rev.Source = revocationSource
	rev.EventID = randomString(16)
	rev.ObservedAt = now
	if rev.Kind == posture.RevokeSession && rev.ExpiresAt.IsZero() {
		rev.ExpiresAt = now.Add(posture.DefaultRevocationTTL)
	}
	_, err := m.store.ApplyRevocations(ctx, []posture.RevocationEvent{{Revocation: rev}})
	return err
}

// serveBackchannel implements OpenID Connect Back-Channel Logout 1.0: the
// provider posts a signed logout token, and the sessions it names (by sid,
// else every session of sub) are revoked, which also closes their live
// requests.
func (m *Manager) serveBackchannel(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	fail := func(err error) {
		m.log.Warn("back-channel logout refused", "error", err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_request"}`))
	}
	if r.Method != http.MethodPost {
		fail(errors.New("method is not POST"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		fail(err)
		return
	}
	n, err := m.backchannel(r.Context(), r.PostForm.Get("logout_token"))
	if err != nil {
		fail(err)
		return
	}
	m.log.Info("back-channel logout", "revocations", n)
	w.WriteHeader(http.StatusOK)
}

// backchannel validates a logout token and revokes what it names; it
// returns how many revocations it stored.
func (m *Manager) backchannel(ctx context.Context, raw string) (int, error) {
	if raw == "" || len(raw) > maxLogoutBody {
		return 0, errors.New("no logout_token")
	}
	jws, err := jose.ParseSigned(raw, newKeySet("", nil, nil).algs)
	if err != nil || len(jws.Signatures) != 1 {
		return 0, errors.New("logout_token is not a signed JWT")
	}
	if typ, ok := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string); ok {
		if t := strings.ToLower(typ); t != "logout+jwt" && t != "application/logout+jwt" {
			return 0, fmt.Errorf("logout_token typ is %q", typ)
		}
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return 0, errors.New("logout_token payload is not JSON")
	}
	p := m.byIssuer[unverified.Issuer]
	if p == nil {
		return 0, errors.New("logout_token from an unknown issuer")
	}
	d, err := p.discover(ctx)
	if err != nil {
		return 0, err
	}
	vctx, cancel := p.ctx(ctx)
	defer cancel()
	lt, err := d.logout.VerifyLogout(vctx, raw)
	if err != nil {
		return 0, err
	}
	var c struct {
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := lt.Claims(&c); err != nil {
		return 0, err
	}
	if ev := c.Events[backchannelEvent]; len(ev) == 0 || ev[0] != '{' {
		return 0, errors.New("events claim lacks the back-channel logout event object")
	}
	now := m.now()
	skew := p.cfg.ClockSkew.Std()
	if lt.IssuedAt.IsZero() || now.Sub(lt.IssuedAt) > maxIATAge+skew || lt.IssuedAt.Sub(now) > skew {
		return 0, errors.New("iat is missing, too old or in the future")
	}
	exp := lt.Expiry
	if exp.IsZero() || exp.Sub(now) > time.Hour {
		exp = now.Add(time.Hour)
	}
	seen, err := m.jtis.Seen(ctx, "oidc:"+p.cfg.Name+"\x00"+lt.TokenID, exp, now)
	if err != nil {
		return 0, fmt.Errorf("replay cache: %w", err)
	}
	if seen {
		return 0, errors.New("logout_token replayed")
	}
	var revs []posture.Revocation
	if lt.SessionID != "" {
		key := p.revocationKey("sid", lt.SessionID)
		revs = append(revs, posture.Revocation{Kind: posture.RevokeSession, Session: key})
		for _, e := range m.sids.get(key) {
			revs = append(revs, posture.Revocation{Kind: posture.RevokeSession, Session: e.session, User: e.user, ExpiresAt: e.expires})
		}
	} else {
		key := p.revocationKey("sub", lt.Subject)
		revs = append(revs, posture.Revocation{Kind: posture.RevokeUser, User: key, Before: now})
		users := map[string]bool{}
		for _, e := range m.sids.get(key) {
			if !users[e.user] {
				users[e.user] = true
				revs = append(revs, posture.Revocation{Kind: posture.RevokeUser, User: e.user, Before: now})
			}
		}
		if p.cfg.Claims.User == "sub" && !users[strings.ToLower(lt.Subject)] {
			revs = append(revs, posture.Revocation{Kind: posture.RevokeUser, User: lt.Subject, Before: now})
		}
	}
	for _, rev := range revs {
		if err := m.revoke(ctx, rev); err != nil {
			return 0, fmt.Errorf("storing revocation: %w", err)
		}
	}
	return len(revs), nil
}

package oidc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/deny"
)

const (
	// loginTTL is how long a login may take, from start to callback.
	loginTTL = 10 * time.Minute
	// maxIATAge is how old an ID token may be at the callback.
	maxIATAge = 10 * time.Minute
	// loginCookie prefixes the login-state cookie; the first characters
	// of the state complete its name, so parallel logins in several tabs
	// do not overwrite each other.
	loginCookie = "__Host-pc_l-"
	stateLen    = 43 // 32 random bytes, base64url
)

// loginState is sealed into the login-state cookie at the start and read
// back at the callback: it binds the callback to this browser.
type loginState struct {
	Provider string   `json:"p"`
	State    string   `json:"s"`
	Nonce    string   `json:"n"`
	Verifier string   `json:"v"`
	Return   string   `json:"r"`
	Started  int64    `json:"t"`
	ACR      []string `json:"a,omitempty"`
	MaxAge   int      `json:"m"`
	Prompt   string   `json:"pr,omitempty"`
	// Forced marks a login restarted with prompt=login because the
	// provider's session predates a revocation of the user.
	Forced bool `json:"f,omitempty"`
}

func (m *Manager) page(w http.ResponseWriter, r *http.Request, status int, reason enforcement.Reason, detail, retry string) {
	if detail == "" {
		detail = reason.Message()
	}
	deny.Write(w, r, deny.Info{Status: status, Reason: string(reason), Title: http.StatusText(status), Detail: detail, LoginURL: retry})
}

// serveStart begins a login: it checks the return URL, and either hands
// an existing session of this host over to the return host (one login
// for many hosts) or redirects to the provider.
func (m *Manager) serveStart(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		m.page(w, r, http.StatusMethodNotAllowed, enforcement.ReasonLoginRequired, "", "")
		return
	}
	q := r.URL.Query()
	p := m.providers[q.Get("provider")]
	if p == nil {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "Unknown sign-in provider.", "")
		return
	}
	ret, err := p.returns.Check(q.Get("rd"), requestBase(r))
	if err != nil {
		m.log.Info("oidc start refused", "provider", p.cfg.Name, "error", err)
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "The address to return to after sign-in is not allowed.", "")
		return
	}
	st := loginState{Provider: p.cfg.Name, Return: ret.String(), MaxAge: -1}
	if v := q.Get("acr"); v != "" {
		st.ACR = strings.Fields(v)
		if len(st.ACR) > 8 || len(v) > 512 {
			m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "Malformed sign-in request.", "")
			return
		}
	}
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 366*24*3600 {
			m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "Malformed sign-in request.", "")
			return
		}
		st.MaxAge = n
	}
	if q.Get("prompt") == "login" {
		st.Prompt = "login"
	}
	now := m.now()
	if st.Prompt == "" && len(st.ACR) == 0 && st.MaxAge < 0 {
		if s, err := p.codec.Read(r, now); err == nil {
			m.complete(w, r, p, s, ret)
			return
		}
	}
	m.redirectToProvider(w, r, p, st)
}

func (m *Manager) redirectToProvider(w http.ResponseWriter, r *http.Request, p *Provider, st loginState) {
	d, err := p.discover(r.Context())
	if err != nil {
		m.page(w, r, http.StatusServiceUnavailable, enforcement.ReasonIdPUnavailable, "", "")
		return
	}
	st.State, st.Nonce, st.Verifier = randomString(32), randomString(32), oauth2.GenerateVerifier()
	st.Started = m.now().Unix()
	b, _ := json.Marshal(&st)
	name := loginCookie + st.State[:16]
	http.SetCookie(w, &http.Cookie{Name: name, Value: m.box.Seal(name, b), Path: "/", MaxAge: int(loginTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)}
	if len(st.ACR) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(st.ACR, " ")))
	}
	if st.MaxAge >= 0 {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.Itoa(st.MaxAge)))
	}
	if st.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", st.Prompt))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, d.oauth.AuthCodeURL(st.State, opts...), http.StatusFound)
}

// readState finds, opens and deletes the login-state cookie of state.
func (m *Manager) readState(w http.ResponseWriter, r *http.Request, state string) (*loginState, bool) {
	if len(state) != stateLen || strings.Trim(state, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return nil, false
	}
	name := loginCookie + state[:16]
	v, ok := session.CookieValue(r.Header, name)
	if !ok {
		return nil, false
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	b, err := m.box.Open(name, v)
	if err != nil {
		return nil, false
	}
	var st loginState
	if json.Unmarshal(b, &st) != nil || subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return nil, false
	}
	if age := m.now().Sub(time.Unix(st.Started, 0)); age < -time.Minute || age > loginTTL {
		return nil, false
	}
	return &st, true
}

// serveCallback finishes a login: the authorization response is checked
// against the login state, the code exchanged (with the PKCE verifier),
// the ID token verified, and a session issued.
func (m *Manager) serveCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		m.page(w, r, http.StatusMethodNotAllowed, enforcement.ReasonLoginRequired, "", "")
		return
	}
	q := r.URL.Query()
	st, ok := m.readState(w, r, q.Get("state"))
	if !ok {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "This sign-in was not started in this browser, or took too long. Start again.", "")
		return
	}
	p := m.providers[st.Provider]
	if p == nil || p.redirect.Path != r.URL.Path {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "This sign-in was not started in this browser, or took too long. Start again.", "")
		return
	}
	retry := st.Return
	if q.Get("error") != "" {
		m.page(w, r, http.StatusUnauthorized, enforcement.ReasonLoginRequired, "The sign-in service did not sign you in.", retry)
		return
	}
	if iss := q.Get("iss"); iss != "" && iss != p.cfg.Issuer {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "The sign-in answer came from another service.", retry)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "The sign-in answer is malformed.", retry)
		return
	}
	d, err := p.discover(r.Context())
	if err != nil {
		m.page(w, r, http.StatusServiceUnavailable, enforcement.ReasonIdPUnavailable, "", retry)
		return
	}
	s, err := p.finish(r.Context(), d, st, code)
	switch {
	case errors.Is(err, errRelogin):
		st.Prompt, st.MaxAge, st.Forced = "login", 0, true
		m.redirectToProvider(w, r, p, *st)
		return
	case errors.Is(err, ErrUnavailable):
		m.page(w, r, http.StatusServiceUnavailable, enforcement.ReasonIdPUnavailable, "", retry)
		return
	case errors.Is(err, errWeak):
		m.page(w, r, http.StatusForbidden, enforcement.ReasonMFARequired, "The sign-in service did not sign you in as strongly as this resource needs.", "")
		return
	case errors.Is(err, errStale):
		m.page(w, r, http.StatusForbidden, enforcement.ReasonReauthRequired, "The sign-in service did not sign you in again.", "")
		return
	case err != nil:
		m.log.Warn("oidc login failed", "provider", p.cfg.Name, "error", err)
		m.page(w, r, http.StatusUnauthorized, enforcement.ReasonLoginRequired, "The sign-in could not be verified. Start again.", retry)
		return
	}
	// The return URL was checked at the start; check it again, against
	// the configuration of now, and redirect only to what this yields.
	ret, err := p.returns.Check(st.Return, requestBase(r))
	if err != nil {
		m.page(w, r, http.StatusBadRequest, enforcement.ReasonLoginRequired, "The address to return to after sign-in is not allowed.", "")
		return
	}
	m.log.Info("oidc login", "provider", p.cfg.Name, "user", s.Subject.UserID, "session_id", s.Subject.SessionID)
	m.complete(w, r, p, s, ret)
}

var (
	errRelogin = errors.New("provider session predates a revocation")
	errWeak    = errors.New("acr below the one requested")
	errStale   = errors.New("auth_time older than max_age")
)

// finish exchanges the code and checks the ID token, returning the new
// session.
func (p *Provider) finish(parent context.Context, d *discovered, st *loginState, code string) (*session.Session, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	tok, err := d.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		var ne net.Error
		if !errors.As(err, &re) && (errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)) {
			return nil, ErrUnavailable
		}
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("token response has no id_token")
	}
	idt, err := d.idTokens.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var c claimSet
	if err := idt.Claims(&c); err != nil {
		return nil, err
	}
	now := p.m.now()
	skew := p.cfg.ClockSkew.Std()
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return nil, errors.New("nonce does not match")
	}
	if len(idt.Audience) > 1 && c.str("azp") != p.cfg.ClientID {
		return nil, errors.New("azp is not our client id")
	}
	if az := c.str("azp"); az != "" && az != p.cfg.ClientID {
		return nil, errors.New("azp is not our client id")
	}
	if idt.IssuedAt.IsZero() || now.Sub(idt.IssuedAt) > maxIATAge+skew || idt.IssuedAt.Sub(now) > skew {
		return nil, errors.New("iat is missing, too old or in the future")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, err
		}
	}
	if p.cfg.UseUserinfo {
		ui, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, err
		}
		if ui.Subject != idt.Subject {
			return nil, errors.New("userinfo sub differs from the ID token's")
		}
		var uc claimSet
		if err := ui.Claims(&uc); err != nil {
			return nil, err
		}
		for k, v := range uc {
			if _, ok := c[k]; !ok {
				c[k] = v
			}
		}
	}
	sub, err := p.subject(c)
	if err != nil {
		return nil, err
	}
	authTime := c.time("auth_time")
	if st.MaxAge >= 0 {
		if authTime.IsZero() || now.Sub(authTime) > time.Duration(st.MaxAge)*time.Second+skew {
			return nil, errStale
		}
	}
	if len(st.ACR) > 0 && !slices.Contains(st.ACR, sub.ACR) {
		return nil, errWeak
	}
	subKey := p.revocationKey("sub", idt.Subject)
	// A provider session that authenticated before the user was revoked
	// (single sign-on reusing it) must not open a new session: the same
	// rule as every decision's.
	cand := *sub
	cand.SubjectKey = subKey
	if enforcement.SubjectRevocations(p.m.store, &cand)&enforcement.RevokedUser != 0 {
		if st.Forced {
			return nil, errStale
		}
		return nil, errRelogin
	}
	s := p.codec.New(randomString(16), now, time.Time{})
	id := s.Subject.SessionID
	s.Subject = *sub
	s.Subject.SessionID = id
	s.Subject.IdPSession = p.revocationKey("sid", c.str("sid"))
	s.Subject.SubjectKey = subKey
	e := sidEntry{session: id, user: sub.UserID, expires: s.Expires}
	p.m.sids.add(s.Subject.IdPSession, e, now)
	p.m.sids.add(subKey, e, now)
	return s, nil
}

// complete sets the session cookie on this host and sends the browser to
// ret: directly when ret is on this host, else through a one-time code
// that only ret's host can redeem.
func (m *Manager) complete(w http.ResponseWriter, r *http.Request, p *Provider, s *session.Session, ret *flow.Target) {
	value, err := p.codec.Seal(s)
	if err != nil {
		m.log.Warn("sealing session", "provider", p.cfg.Name, "error", err)
		m.page(w, r, http.StatusForbidden, enforcement.ReasonUserUnknown, "Your account has too many groups for a session.", "")
		return
	}
	if err := m.handoffs.Finish(w, r, p.codec, s, value, ret); err != nil {
		m.page(w, r, http.StatusServiceUnavailable, enforcement.ReasonIdPUnavailable, "Too many sign-ins in progress; try again.", "")
	}
}

// requestBase is the origin a path in a return URL is resolved against:
// the one the request reached.
func requestBase(r *http.Request) *url.URL {
	return &url.URL{Scheme: "https", Host: r.Host}
}

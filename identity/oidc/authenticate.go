package oidc

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/deny"
)

// cookiePrefix is the start of every cookie this package sets; none of
// them ever reaches an upstream.
const cookiePrefix = "__Host-pc_"

// Authenticate returns the subject r proves to this provider: a bearer
// token (when bearer tokens are configured) or a session cookie. It
// removes those credentials from r. When w is not nil and the session is
// due for it, the cookie is re-issued to push back its idle deadline.
// Any problem with the credentials (tampered, expired, revoked) is nil:
// the user logs in again.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) *enforcement.Subject {
	var sub *enforcement.Subject
	if p.cfg.Bearer != nil {
		if tok, ok := bearerToken(r.Header); ok {
			sub = p.VerifyBearer(r.Context(), tok)
			r.Header.Del("Authorization")
		}
	}
	if sub == nil {
		now := p.m.now()
		if s, err := p.codec.Read(r, now); err == nil {
			if w != nil && p.codec.NeedsRefresh(s, now) {
				s.Refreshed = now
				if err := p.codec.Write(w, s); err != nil {
					p.m.log.Warn("refreshing session cookie", "provider", p.cfg.Name, "error", err)
				}
			}
			sub = &s.Subject
		}
	}
	session.StripCookies(r.Header, cookiePrefix)
	return sub
}

// Challenge answers a request that must log in (d.Verdict Login) or log
// in again more strongly (StepUp). A browser is redirected to the login;
// an API client gets a 401 problem document with WWW-Authenticate. c
// carries the resource's requirements, and the request id and resource
// for the page.
func (p *Provider) Challenge(w http.ResponseWriter, r *http.Request, d enforcement.Decision, c flow.Challenge) {
	st := p.stepUp(d, c)
	info := deny.Info{RequestID: c.RequestID, Resource: c.Resource}
	ret := "https://" + r.Host + r.URL.RequestURI()
	login := p.startURL(ret, st)
	info.Status = http.StatusUnauthorized
	info.Reason = string(d.Reason)
	if info.Title == "" {
		info.Title = "Sign-in required"
	}
	if info.Detail == "" {
		info.Detail = d.Reason.Message()
	}
	_, hasBearer := bearerToken(r.Header)
	api := deny.PrefersJSON(r.Header.Values("Accept")) || hasBearer || (r.Method != http.MethodGet && r.Method != http.MethodHead)
	if api {
		info.LoginURL = login
		info.WWWAuthenticate = p.wwwAuthenticate(d, st, hasBearer)
		deny.Write(w, r, info)
		return
	}
	if !p.Available(r.Context()) {
		info.Status = http.StatusServiceUnavailable
		info.Reason = string(enforcement.ReasonIdPUnavailable)
		info.Title = "Sign-in unavailable"
		info.Detail = enforcement.ReasonIdPUnavailable.Message()
		deny.Write(w, r, info)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, login, http.StatusFound)
}

// stepParams are the extra authorization request parameters of a
// step-up.
type stepParams struct {
	acr    []string
	maxAge int // seconds; -1: not sent
	prompt string
}

func (p *Provider) stepUp(d enforcement.Decision, req flow.Challenge) stepParams {
	st := stepParams{maxAge: -1}
	if d.Verdict != enforcement.StepUp {
		return st
	}
	st.prompt = "login"
	switch d.Reason {
	case enforcement.ReasonMFARequired:
		st.acr = req.ACR
		if len(st.acr) == 0 && req.MFA {
			st.acr = p.cfg.MFAACRValues
		}
	case enforcement.ReasonReauthRequired:
		st.maxAge = int(req.MaxAuthAge / time.Second)
	}
	return st
}

// startURL is the login start endpoint on the callback's host.
func (p *Provider) startURL(ret string, st stepParams) string {
	q := url.Values{"provider": {p.cfg.Name}, "rd": {ret}}
	if len(st.acr) > 0 {
		q.Set("acr", strings.Join(st.acr, " "))
	}
	if st.maxAge >= 0 {
		q.Set("max_age", strconv.Itoa(st.maxAge))
	}
	if st.prompt != "" {
		q.Set("prompt", st.prompt)
	}
	return "https://" + p.redirect.Host + StartPath + "?" + q.Encode()
}

// wwwAuthenticate builds the challenge of RFC 6750, with the step-up
// error of RFC 9470 when a stronger or fresher sign-in is needed.
func (p *Provider) wwwAuthenticate(d enforcement.Decision, st stepParams, hadBearer bool) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="portcullis"`)
	switch {
	case d.Verdict == enforcement.StepUp:
		b.WriteString(`, error="insufficient_user_authentication", error_description=`)
		b.WriteString(jsonString(d.Reason.Message()))
		if len(st.acr) > 0 {
			b.WriteString(`, acr_values=`)
			b.WriteString(jsonString(strings.Join(st.acr, " ")))
		}
		if st.maxAge >= 0 {
			b.WriteString(`, max_age=` + strconv.Itoa(st.maxAge))
		}
	case hadBearer:
		b.WriteString(`, error="invalid_token"`)
	}
	return b.String()
}

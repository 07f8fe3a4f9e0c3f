package flow

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/session"
	"portcullis/internal/deny"
)

// HandoffPath is where a handoff code is redeemed, on every host.
const HandoffPath = "/.portcullis/session"

const (
	// HandoffTTL is how long a handoff code can be redeemed.
	HandoffTTL = time.Minute
	// maxHandoffs bounds the codes outstanding.
	maxHandoffs = 10000
	codeLen     = 43 // 32 random bytes, base64url
)

// ErrBusy is returned by [Handoffs.Finish] when too many handoffs are
// outstanding.
var ErrBusy = errors.New("too many sign-ins in progress")

// Handoffs carries finished logins from the host that received them (the
// OIDC callback host, the SAML ACS host) to the host the user started
// on: session cookies are host-only, so that host must set its own. A
// one-time code, redeemable for [HandoffTTL] on that host only, stands in
// for the sealed session. Handoffs are safe for concurrent use, and
// should outlive configuration reloads so that logins in flight survive
// them.
type Handoffs struct {
	now func() time.Time

	mu sync.Mutex // guards m
	m  map[string]*handoff
}

type handoff struct {
	codec   *session.Codec
	value   string // sealed session
	target  *Target
	expires time.Time
}

// NewHandoffs returns an empty table; now is the clock (nil: time.Now).
func NewHandoffs(now func() time.Time) *Handoffs {
	if now == nil {
		now = time.Now
	}
	return &Handoffs{now: now, m: map[string]*handoff{}}
}

// Finish ends a login on the host that received it: the session's cookie
// (value, sealed by codec) is set on this host, and the browser is sent
// to target: straight there when target is on this host, else through
// a handoff code. The only error is [ErrBusy]; nothing is written then.
func (h *Handoffs) Finish(w http.ResponseWriter, r *http.Request, codec *session.Codec, s *session.Session, value string, target *Target) error {
	if target.OnHost(r.Host) {
		http.SetCookie(w, codec.Cookie(value, s))
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target.String(), http.StatusSeeOther)
		return nil
	}
	code := randomCode()
	if !h.put(code, &handoff{codec: codec, value: value, target: target, expires: h.now().Add(HandoffTTL)}) {
		return ErrBusy
	}
	http.SetCookie(w, codec.Cookie(value, s))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target.On(HandoffPath, url.Values{"code": {code}}.Encode()), http.StatusSeeOther)
	return nil
}

func (h *Handoffs) put(code string, v *handoff) bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.m) >= maxHandoffs {
		for k, e := range h.m {
			if now.After(e.expires) {
				delete(h.m, k)
			}
		}
		if len(h.m) >= maxHandoffs {
			return false
		}
	}
	h.m[code] = v
	return true
}

// take removes and returns the handoff of code, if it has not expired.
func (h *Handoffs) take(code string) *handoff {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.m[code]
	delete(h.m, code)
	if v == nil || now.After(v.expires) {
		return nil
	}
	return v
}

// ServeHTTP redeems a handoff code on the host it was issued for. The
// session is opened again first, so one revoked (or expired) since the
// login is refused rather than planted on another host.
func (h *Handoffs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		page(w, r, http.StatusMethodNotAllowed, "")
		return
	}
	code := r.URL.Query().Get("code")
	if len(code) != codeLen {
		page(w, r, http.StatusBadRequest, "This sign-in link is not valid. Start again.")
		return
	}
	e := h.take(code)
	if e == nil || !e.target.OnHost(r.Host) {
		page(w, r, http.StatusBadRequest, "This sign-in link is not valid. Start again.")
		return
	}
	s, err := e.codec.Open(e.value, h.now())
	if err != nil {
		page(w, r, http.StatusUnauthorized, "This sign-in has ended. Sign in again.")
		return
	}
	http.SetCookie(w, e.codec.Cookie(e.value, s))
	http.Redirect(w, r, e.target.String(), http.StatusSeeOther)
}

func page(w http.ResponseWriter, r *http.Request, status int, detail string) {
	reason := enforcement.ReasonLoginRequired
	if detail == "" {
		detail = reason.Message()
	}
	deny.Write(w, r, deny.Info{Status: status, Reason: string(reason), Title: http.StatusText(status), Detail: detail})
}

func randomCode() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

package saml

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"portcullis/identity/session"
)

// Bounds of the in-memory login state.
const (
	// RequestTTL is how long an AuthnRequest can be answered.
	RequestTTL = 10 * time.Minute
	maxPending = 10000
)

// BindingCookie holds a random value that ties the AuthnRequests a
// browser started to that browser, so a response obtained elsewhere cannot
// be posted into it (login CSRF). SameSite=None: the ACS is a cross-site
// POST. It starts with session.CookiePrefix, so it is stripped before
// requests go upstream like every other gateway cookie.
const BindingCookie = session.CookiePrefix + "aml_req"

// pending is an AuthnRequest we issued and not yet saw answered.
type pending struct {
	idp      string
	binding  [32]byte // sha256 of the browser's binding cookie value
	returnTo string
	expires  time.Time
}

// Tracker holds the SAML logins in progress: the AuthnRequest ids each
// browser is waiting for. It is
// bounded and safe for concurrent use, and should outlive configuration
// reloads so that logins in flight survive them.
type Tracker struct {
	mu       sync.Mutex
	requests map[string]pending
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{requests: map[string]pending{}}
}

func (t *Tracker) addRequest(id string, p pending, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.requests) >= maxPending {
		for k, v := range t.requests {
			if !v.expires.After(now) {
				delete(t.requests, k)
			}
		}
		for k := range t.requests { // still full: drop an arbitrary one
			if len(t.requests) < maxPending {
				break
			}
			delete(t.requests, k)
		}
	}
	t.requests[id] = p
}

// takeRequest removes and returns the request id if it is live, belongs
// to idp and to the browser holding cookie.
func (t *Tracker) takeRequest(idp, id, cookie string, now time.Time) (pending, bool) {
	if id == "" || cookie == "" {
		return pending{}, false
	}
	t.mu.Lock()
	p, ok := t.requests[id]
	if !ok || p.idp != idp {
		t.mu.Unlock()
		return pending{}, false
	}
	h := sha256.Sum256([]byte(cookie))
	if subtle.ConstantTimeCompare(h[:], p.binding[:]) != 1 {
		t.mu.Unlock()
		return pending{}, false
	}
	delete(t.requests, id)
	t.mu.Unlock()
	return p, p.expires.After(now)
}

// randomToken returns n random bytes in base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// bindingValue returns the browser's binding cookie, setting a new one
// when it has none (or a malformed one).
func bindingValue(w http.ResponseWriter, r *http.Request) string {
	if v, ok := session.CookieValue(r.Header, BindingCookie); ok && len(v) == 43 {
		return v
	}
	v := randomToken(32)
	http.SetCookie(w, &http.Cookie{Name: BindingCookie, Value: v, Path: "/", MaxAge: int(RequestTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteNoneMode})
	return v
}

package flow

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis/identity/session"
)

// revocations is a session.Revocations for tests.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (r *revocations) SessionRevoked(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[id]
}

func (r *revocations) UserRevokedBefore(string) time.Time { return time.Time{} }

func (r *revocations) revoke(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[id] = true
}

type handoffFixture struct {
	h     *Handoffs
	codec *session.Codec
	revs  *revocations
	now   time.Time
}

func newHandoffFixture(t *testing.T) *handoffFixture {
	t.Helper()
	k := make([]byte, session.KeySize)
	rand.Read(k)
	f := &handoffFixture{revs: &revocations{revoked: map[string]bool{}}, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	var err error
	if f.codec, err = session.NewCodec(session.CookiePrefix+"-test", [][]byte{k}, session.Config{}, f.revs); err != nil {
		t.Fatal(err)
	}
	f.h = NewHandoffs(func() time.Time { return f.now })
	return f
}

// finish runs Finish on the callback host for a session with id sid,
// returning the response.
func (f *handoffFixture) finish(t *testing.T, sid, ret string) *httptest.ResponseRecorder {
	t.Helper()
	s := f.codec.New(sid, f.now, time.Time{})
	s.Subject.UserID = "alice@example.test"
	value, err := f.codec.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := testReturns().Check(ret, testBase)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://auth.example.test:8443/.portcullis/oidc/callback", nil)
	if err := f.h.Finish(w, r, f.codec, s, value, tg); err != nil {
		t.Fatal(err)
	}
	return w
}

func (f *handoffFixture) redeem(loc string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("GET", loc, nil))
	return w
}

func TestFinishSameHost(t *testing.T) {
	f := newHandoffFixture(t)
	w := f.finish(t, "s1", "/x?y=1")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://auth.example.test:8443/x?y=1" {
		t.Fatalf("Finish = %d %q", w.Code, w.Header().Get("Location"))
	}
	if len(w.Result().Cookies()) != 1 {
		t.Errorf("cookies = %v, want the session's", w.Result().Cookies())
	}
}

func TestHandoff(t *testing.T) {
	f := newHandoffFixture(t)
	w := f.finish(t, "s1", "https://app.example.test//evil.example/x")
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || w.Code != http.StatusSeeOther || loc.Host != "app.example.test" || loc.Path != HandoffPath {
		t.Fatalf("Finish = %d %q", w.Code, w.Header().Get("Location"))
	}
	// On another host (here with the right name but another port) the
	// code is refused, and spent.
	other := *loc
	other.Host = "app.example.test:9443"
	if hw := f.redeem(other.String()); hw.Code != http.StatusBadRequest {
		t.Errorf("handoff on another port = %d, want 400", hw.Code)
	}
	if hw := f.redeem(loc.String()); hw.Code != http.StatusBadRequest {
		t.Errorf("handoff after a refused try = %d, want 400 (single use)", hw.Code)
	}

	w = f.finish(t, "s2", "https://app.example.test//evil.example/x")
	hw := f.redeem(w.Header().Get("Location"))
	if hw.Code != http.StatusSeeOther || hw.Header().Get("Location") != "https://app.example.test/evil.example/x" {
		t.Fatalf("handoff = %d %q", hw.Code, hw.Header().Get("Location"))
	}
	if len(hw.Result().Cookies()) != 1 || !hw.Result().Cookies()[0].Secure {
		t.Errorf("handoff cookies = %v", hw.Result().Cookies())
	}
	if hw := f.redeem(w.Header().Get("Location")); hw.Code != http.StatusBadRequest {
		t.Errorf("second redemption = %d, want 400", hw.Code)
	}

	// Expired.
	w = f.finish(t, "s3", "https://app.example.test/")
	f.now = f.now.Add(HandoffTTL + time.Second)
	if hw := f.redeem(w.Header().Get("Location")); hw.Code != http.StatusBadRequest {
		t.Errorf("expired handoff = %d, want 400", hw.Code)
	}
}

// TestHandoffRechecksRevocation: a session revoked between the login
// and the handoff (a Universal Logout, a back-channel logout) is not
// planted on the other host.
func TestHandoffRechecksRevocation(t *testing.T) {
	f := newHandoffFixture(t)
	w := f.finish(t, "s1", "https://app.example.test/x")
	f.revs.revoke("s1")
	hw := f.redeem(w.Header().Get("Location"))
	if hw.Code != http.StatusUnauthorized || len(hw.Result().Cookies()) != 0 || hw.Header().Get("Location") != "" {
		t.Errorf("handoff of a revoked session = %d, cookies %v, Location %q; want 401 and nothing set",
			hw.Code, hw.Result().Cookies(), hw.Header().Get("Location"))
	}
}

func TestHandoffMalformed(t *testing.T) {
	f := newHandoffFixture(t)
	for _, q := range []string{"", "code=", "code=" + strings.Repeat("A", 43), "code=%zz", "code=" + strings.Repeat("A", 5000)} {
		w := f.redeem("https://app.example.test" + HandoffPath + "?" + q)
		if w.Code != http.StatusBadRequest {
			t.Errorf("handoff ?%s = %d, want 400", q, w.Code)
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("POST", "https://app.example.test"+HandoffPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST handoff = %d, want 405", w.Code)
	}
}

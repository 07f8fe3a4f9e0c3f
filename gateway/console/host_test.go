package console

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

var csrfInPage = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// hostGet sends a GET to the console host's handler as the gateway does
// after its policy allowed op (no operator: nil).
func hostDo(tc *testConsole, op *Operator, r *http.Request, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	if op != nil {
		r = r.WithContext(WithOperator(r.Context(), *op))
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	tc.HostHandler().ServeHTTP(w, r)
	return w
}

func cookieOf(w *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

// TestHostSessions: on the console host the operator the gateway let in
// gets a session of their own without signing in again, kept while it is
// the same login; the admin listener never takes such a session, and the
// host never takes the admin listener's.
func TestHostSessions(t *testing.T) {
	tc := newTestConsole(t)
	alice := &Operator{User: "alice@example.test", IdP: "corp", Session: "s1"}

	w := hostDo(tc, alice, httptest.NewRequest("GET", "https://console.test/console/", nil))
	ck := cookieOf(w)
	if w.Code != http.StatusOK || ck == nil || !strings.Contains(w.Body.String(), "alice@example.test") {
		t.Fatalf("host overview = %d, cookie %v", w.Code, ck)
	}
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("host cookie %+v", ck)
	}
	// The same login keeps its session; another login gets a new one.
	if w := hostDo(tc, alice, httptest.NewRequest("GET", "https://console.test/console/live", nil), ck); w.Code != 200 || cookieOf(w) != nil {
		t.Errorf("same login: %d, new cookie %v", w.Code, cookieOf(w))
	}
	for _, op := range []*Operator{
		{User: "bob@example.test", IdP: "corp", Session: "s1"},
		{User: "alice@example.test", IdP: "saml:corp", Session: "s1"},
		{User: "alice@example.test", IdP: "corp", Session: "s2"},
	} {
		if w := hostDo(tc, op, httptest.NewRequest("GET", "https://console.test/console/", nil), ck); w.Code != 200 || cookieOf(w) == nil {
			t.Errorf("login %+v with alice's session: %d, want a new session", op, w.Code)
		}
	}
	// No operator: refused, whatever the cookie.
	if w := hostDo(tc, nil, httptest.NewRequest("GET", "https://console.test/console/", nil), ck); w.Code != http.StatusForbidden {
		t.Errorf("host without an operator = %d, want 403", w.Code)
	}
	// The admin listener does not take the host's session.
	if w := get(tc, ck, "/console/"); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login" {
		t.Errorf("host session on the admin listener = %d %q, want 303 to sign in", w.Code, w.Header().Get("Location"))
	}
	// The host does not take a token session: its form's CSRF token
	// belongs to another session.
	tokenCk, tokenCSRF := tc.signIn(t)
	form := url.Values{"csrf": {tokenCSRF}, "request_id": {"r-1"}}
	r := httptest.NewRequest("POST", "https://console.test/console/live/close", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://console.test")
	if w := hostDo(tc, alice, r, tokenCk); w.Code != http.StatusForbidden {
		t.Errorf("token session's form on the host = %d, want 403", w.Code)
	}
	// No token sign-in on the host; its sign-in page sends on.
	r = httptest.NewRequest("POST", "https://console.test/console/login", strings.NewReader("token="+testToken))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := hostDo(tc, alice, r); w.Code != http.StatusNotFound || cookieOf(w) != nil {
		t.Errorf("token sign-in on the host = %d, cookie %v; want 404 and none", w.Code, cookieOf(w))
	}
	if w := hostDo(tc, alice, httptest.NewRequest("GET", "https://console.test/console/login", nil), ck); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/" {
		t.Errorf("host sign-in page = %d %q", w.Code, w.Header().Get("Location"))
	}
}

// TestHostAction: an action on the host names the operator, and signing
// out sends the browser to the gateway's logout.
func TestHostAction(t *testing.T) {
	tc := newTestConsole(t)
	tc.hostLogout = "/.portcullis/logout"
	alice := &Operator{User: "alice@example.test", IdP: "corp", Session: "s1"}
	w := hostDo(tc, alice, httptest.NewRequest("GET", "https://console.test/console/live", nil))
	ck, m := cookieOf(w), csrfInPage.FindStringSubmatch(w.Body.String())
	if ck == nil || m == nil {
		t.Fatalf("live page = %d without a cookie or form", w.Code)
	}
	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		form.Set("csrf", m[1])
		r := httptest.NewRequest("POST", "https://console.test"+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://console.test")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		return hostDo(tc, alice, r, ck)
	}
	if w := post("/console/live/close", url.Values{"request_id": {"req-1"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("close = %d: %s", w.Code, w.Body)
	}
	acts := tc.log.Actions()
	if len(acts) != 1 {
		t.Fatalf("%d admin actions, want 1", len(acts))
	}
	a := acts[0]
	if a.Operator != "alice@example.test" || a.IdP != "corp" || a.Action != "close_request" {
		t.Errorf("admin_action %+v, want alice via corp", a)
	}
	w = post("/console/logout", url.Values{})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/.portcullis/logout" {
		t.Errorf("host sign-out = %d %q, want 303 to the gateway's logout", w.Code, w.Header().Get("Location"))
	}
}

// TestSessionKeys: consoles sharing a key file open each other's
// sessions (replicas, restarts); a key moved to second place still
// opens; a sign-out on one is a sign-out on all that share the store.
func TestSessionKeys(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	st, gw := fixture()
	mk := func(keys ...[]byte) *testConsole {
		lg := newFakeLog()
		c, err := New(Options{Config: Config{Enabled: true}, Store: st, Gateway: gw, Log: lg, SessionKeys: keys,
			Token: conf.NewSecret([]byte(testToken)), Now: func() time.Time { return fakeNow }})
		if err != nil {
			t.Fatal(err)
		}
		return &testConsole{Console: c, store: st, gw: gw, log: lg}
	}
	a, b, rotated, other := mk(k1), mk(k1), mk(k2, k1), mk(k2)
	ck, csrf := a.signIn(t)
	for name, tt := range map[string]struct {
		c    *testConsole
		want int
	}{"same key": {b, 200}, "rotated": {rotated, 200}, "other key": {other, http.StatusSeeOther}} {
		if w := get(tt.c, ck, "/console/"); w.Code != tt.want {
			t.Errorf("%s: overview = %d, want %d", name, w.Code, tt.want)
		}
	}
	if w := post(a, ck, "/console/logout", url.Values{"csrf": {csrf}}, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("sign-out = %d", w.Code)
	}
	if w := get(b, ck, "/console/"); w.Code != http.StatusSeeOther {
		t.Errorf("after a sign-out on another replica: overview = %d, want 303 to sign in", w.Code)
	}
	if _, err := newSealer([][]byte{{1, 2, 3}}); err == nil {
		t.Error("a 3-byte key was accepted")
	}
}

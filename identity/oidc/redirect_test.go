package oidc

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"portcullis/identity/internal/flow"
	"portcullis/identity/internal/flow/flowtest"
)

// Every endpoint that redirects after a login (the callback, the
// handoff, the start endpoint when a session exists, the logout) sends
// the browser only to an allowed host and port, as an absolute URL.

const callbackHost = "auth.example.test"

var (
	allowedHosts = []string{callbackHost, flowtest.AllowedHost}
	allowedPorts = []string{"", "8443"}
)

// legitReturns are accepted, with the final Location they must give.
var legitReturns = map[string]string{
	"https://app.example.test/x?y=1":           "https://app.example.test/x?y=1",
	"https://app.example.test:8443/x":          "https://app.example.test:8443/x",
	"https://app.example.test//evil.example/x": "https://app.example.test/evil.example/x",
	"/local?q": "https://auth.example.test/local?q",
}

// serve runs one request through m's endpoints (and the shared handoff)
// and returns the response.
func serve(m *Manager, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h := m.Handlers()[r.URL.Path]
	if r.URL.Path == flow.HandoffPath {
		h = m.handoffs
	}
	if h == nil {
		w.WriteHeader(http.StatusNotFound)
		return w
	}
	h.ServeHTTP(w, r)
	return w
}

// follow runs req, then follows the gateway's own redirects (the handoff)
// until one leaves the gateway's endpoints; it checks every Location on
// the way and returns the last, or "" when a step refused.
func follow(t *testing.T, m *Manager, r *http.Request) string {
	t.Helper()
	for range 4 {
		w := serve(m, r)
		loc := w.Header().Get("Location")
		if w.Code >= 400 {
			return ""
		}
		if w.Code/100 != 3 {
			return ""
		}
		flowtest.CheckLocation(t, "https://"+r.Host+r.URL.RequestURI(), loc, allowedHosts, allowedPorts)
		u, err := url.Parse(loc)
		if err != nil || u.Path != flow.HandoffPath {
			return loc
		}
		r = httptest.NewRequest("GET", loc, nil)
	}
	t.Fatal("redirect loop")
	return ""
}

// loginTo runs a whole login that asked to return to rd: start, the
// provider (faked), the callback, and the handoff when there is one. It
// returns the final Location ("" when refused) and the session cookie
// set on the callback host.
func loginTo(t *testing.T, m *Manager, op *fakeOP, rd string) (string, *http.Cookie) {
	t.Helper()
	w := serve(m, httptest.NewRequest("GET", "https://"+callbackHost+StartPath+"?"+url.Values{"provider": {"corp"}, "rd": {rd}}.Encode(), nil))
	if w.Code == http.StatusBadRequest {
		return "", nil
	}
	if w.Code != http.StatusFound {
		t.Fatalf("start = %d %s", w.Code, w.Body)
	}
	auth, _ := url.Parse(w.Header().Get("Location"))
	op.mu.Lock()
	op.nonce = auth.Query().Get("nonce")
	op.mu.Unlock()
	cb := httptest.NewRequest("GET", "https://"+callbackHost+"/.portcullis/oidc/callback?"+
		url.Values{"state": {auth.Query().Get("state")}, "code": {"c1"}}.Encode(), nil)
	for _, c := range w.Result().Cookies() {
		cb.AddCookie(c)
	}
	cw := serve(m, cb)
	var sess *http.Cookie
	for _, c := range cw.Result().Cookies() {
		if c.Name == m.Provider("corp").codec.Name() {
			sess = c
		}
	}
	if cw.Code != http.StatusSeeOther || sess == nil {
		t.Fatalf("callback = %d %s", cw.Code, cw.Body)
	}
	flowtest.CheckLocation(t, cb.URL.String(), cw.Header().Get("Location"), allowedHosts, allowedPorts)
	u, _ := url.Parse(cw.Header().Get("Location"))
	if u.Path != flow.HandoffPath {
		return cw.Header().Get("Location"), sess
	}
	return follow(t, m, httptest.NewRequest("GET", u.String(), nil)), sess
}

func TestLoginRedirects(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	for _, rd := range flowtest.HostileReturns {
		t.Run("hostile "+rd, func(t *testing.T) {
			loginTo(t, m, op, rd) // every Location on the way is checked
		})
	}
	for rd, want := range legitReturns {
		t.Run(rd, func(t *testing.T) {
			if got, _ := loginTo(t, m, op, rd); got != want {
				t.Errorf("login to %q ended at %q, want %q", rd, got, want)
			}
		})
	}
}

// TestStartWithSessionRedirects: with a session on the callback host,
// the start endpoint hands the login over without the provider, and
// must redirect as carefully.
func TestStartWithSessionRedirects(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	_, sess := loginTo(t, m, op, "/")
	start := func(rd string) *http.Request {
		r := httptest.NewRequest("GET", "https://"+callbackHost+StartPath+"?"+url.Values{"provider": {"corp"}, "rd": {rd}}.Encode(), nil)
		r.AddCookie(sess)
		return r
	}
	for _, rd := range flowtest.HostileReturns {
		t.Run("hostile "+rd, func(t *testing.T) { follow(t, m, start(rd)) })
	}
	for rd, want := range legitReturns {
		t.Run(rd, func(t *testing.T) {
			if got := follow(t, m, start(rd)); got != want {
				t.Errorf("start with a session to %q ended at %q, want %q", rd, got, want)
			}
		})
	}
}

func TestLogoutRedirects(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	logout := func(rd string) *http.Request {
		r := httptest.NewRequest("POST", "https://"+flowtest.AllowedHost+LogoutPath+"?"+url.Values{"rd": {rd}}.Encode(), nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		return r
	}
	for _, rd := range flowtest.HostileReturns {
		t.Run("hostile "+rd, func(t *testing.T) { follow(t, m, logout(rd)) })
	}
	if got := follow(t, m, logout("https://app.example.test//evil.example/x")); got != "https://app.example.test/evil.example/x" {
		t.Errorf("logout ended at %q", got)
	}
}

// TestLogoutNeedsPOST: a cross-site top-level GET (a link, an <img>)
// only shows the confirmation page; the session survives. The page's
// same-origin POST ends it.
func TestLogoutNeedsPOST(t *testing.T) {
	op := newFakeOP(t)
	store := &fakeStore{}
	m := newManager(t, op, store)
	_, sess := loginTo(t, m, op, "/")
	r := httptest.NewRequest("GET", "https://"+callbackHost+LogoutPath, nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(sess)
	w := serve(m, r)
	if w.Code != http.StatusOK || len(store.revs) != 0 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("cross-site GET logout = %d, revocations %+v, cookies %v", w.Code, store.revs, w.Result().Cookies())
	}
	r = httptest.NewRequest("POST", "https://"+callbackHost+LogoutPath, nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(sess)
	if w := serve(m, r); w.Code != http.StatusForbidden || len(store.revs) != 0 {
		t.Fatalf("cross-site POST logout = %d, revocations %+v", w.Code, store.revs)
	}
	r = httptest.NewRequest("POST", "https://"+callbackHost+LogoutPath, nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(sess)
	if w := serve(m, r); w.Code != http.StatusOK || len(store.revs) != 1 {
		t.Fatalf("same-origin POST logout = %d, revocations %+v", w.Code, store.revs)
	}
}

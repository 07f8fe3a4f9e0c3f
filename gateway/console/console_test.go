package console

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"portcullis/gateway/audit"
	"portcullis/internal/conf"
)

const testToken = "correct-horse-battery-staple-0123456789"

type testConsole struct {
	*Console
	store *fakeStore
	gw    *fakeGateway
	log   *fakeLog
}

func newTestConsole(t testing.TB) *testConsole {
	t.Helper()
	st, gw := fixture()
	lg := newFakeLog()
	c, err := New(Options{Config: Config{Enabled: true}, Store: st, Gateway: gw, Log: lg,
		Token: conf.NewSecret([]byte(testToken)), PostureMaxAge: 10 * time.Minute, Now: func() time.Time { return fakeNow }})
	if err != nil {
		t.Fatal(err)
	}
	return &testConsole{Console: c, store: st, gw: gw, log: lg}
}

// do sends one request to the console's handler.
func (tc *testConsole) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	tc.Handler().ServeHTTP(w, r)
	return w
}

// signIn signs in with the token and returns the session cookie and the
// session's CSRF token.
func (tc *testConsole) signIn(t testing.TB) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest("POST", "/console/login", strings.NewReader("token="+url.QueryEscape(testToken)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://example.com")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w := tc.do(r)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign-in = %d, want 303: %s", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			s, err := tc.seal.open(c.Value, fakeNow)
			if err != nil {
				t.Fatalf("the sign-in cookie does not open: %v", err)
			}
			return c, s.CSRF
		}
	}
	t.Fatal("sign-in set no session cookie")
	return nil, ""
}

func get(tc *testConsole, ck *http.Cookie, target string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", target, nil)
	if ck != nil {
		r.AddCookie(ck)
	}
	return tc.do(r)
}

// post sends a form as the console's own page would, with hdr applied
// last (a nil value deletes the header).
func post(tc *testConsole, ck *http.Cookie, target string, form url.Values, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://example.com")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if ck != nil {
		r.AddCookie(ck)
	}
	return tc.do(r)
}

func TestSignIn(t *testing.T) {
	tc := newTestConsole(t)
	if w := get(tc, nil, "/console/"); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login" {
		t.Errorf("overview without a session = %d %q, want 303 to /console/login", w.Code, w.Header().Get("Location"))
	}
	if w := get(tc, nil, "/console/login"); w.Code != 200 || !strings.Contains(w.Body.String(), `type="password"`) {
		t.Errorf("login page = %d, want 200 with a password field", w.Code)
	}
	w := post(tc, nil, "/console/login", url.Values{"token": {"wrong"}}, nil)
	if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong token = %d with cookies %v, want 401 and none", w.Code, w.Result().Cookies())
	}
	w = post(tc, nil, "/console/login", url.Values{"token": {testToken}}, nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("right token = %d, want 303", w.Code)
	}
	if loc := w.Header().Get("Location"); strings.Contains(loc, testToken) || loc != "/console/" {
		t.Errorf("sign-in redirects to %q", loc)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies = %v, want one", cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || strings.Contains(ck.Value, testToken) {
		t.Errorf("session cookie = %+v: want HttpOnly, SameSite=Strict, Path=/console/, and no token in it", ck)
	}
	if w := get(tc, ck, "/console/"); w.Code != 200 {
		t.Errorf("overview with a session = %d, want 200", w.Code)
	}
	// Over TLS the cookie is Secure as well.
	r := httptest.NewRequest("POST", "https://example.com/console/login", strings.NewReader("token="+testToken))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := tc.do(r); len(w.Result().Cookies()) != 1 || !w.Result().Cookies()[0].Secure {
		t.Errorf("sign-in over TLS: cookie not Secure: %v", w.Result().Cookies())
	}
}

func TestSignInRefusals(t *testing.T) {
	tests := []struct {
		name string
		hdr  map[string]string
	}{
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site", map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"other origin", map[string]string{"Sec-Fetch-Site": "", "Origin": "http://evil.example"}},
		{"null origin", map[string]string{"Sec-Fetch-Site": "", "Origin": "null"}},
		{"other scheme", map[string]string{"Sec-Fetch-Site": "", "Origin": "https://example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConsole(t)
			w := post(tc, nil, "/console/login", url.Values{"token": {testToken}}, tt.hdr)
			if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
				t.Errorf("sign-in = %d with cookies %v, want 403 and none", w.Code, w.Result().Cookies())
			}
		})
	}
}

func TestSignInOff(t *testing.T) {
	st, gw := fixture()
	c, err := New(Options{Store: st, Gateway: gw, Log: newFakeLog()})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testConsole{Console: c}
	if w := get(tc, nil, "/console/login"); !strings.Contains(w.Body.String(), "Sign-in is off") {
		t.Errorf("login page without a token says: %s", w.Body)
	}
	if w := post(tc, nil, "/console/login", url.Values{"token": {""}}, nil); w.Code != http.StatusNotFound {
		t.Errorf("sign-in without a token configured = %d, want 404", w.Code)
	}
}

func TestSession(t *testing.T) {
	tc := newTestConsole(t)
	ck, csrf := tc.signIn(t)
	tests := []struct {
		name  string
		value string
	}{
		{"garbage", "garbage"},
		{"empty", ""},
		{"truncated", ck.Value[:len(ck.Value)-4]},
		{"flipped", flip(ck.Value)},
		{"too long", strings.Repeat("A", maxCookieLen+1)},
		{"other process", func() string {
			other := newTestConsole(t)
			c, _ := other.signIn(t)
			return c.Value
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := get(tc, &http.Cookie{Name: cookieName, Value: tt.value}, "/console/"); w.Code != http.StatusSeeOther {
				t.Errorf("overview = %d, want 303 to sign in", w.Code)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		later := fakeNow.Add(DefaultSessionMaxAge + time.Second)
		if _, err := tc.seal.open(ck.Value, later); err == nil {
			t.Error("a session opened after its max age")
		}
	})
	t.Run("signed out", func(t *testing.T) {
		w := post(tc, ck, "/console/logout", url.Values{"csrf": {csrf}}, nil)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("sign-out = %d, want 303", w.Code)
		}
		if w := get(tc, ck, "/console/"); w.Code != http.StatusSeeOther {
			t.Errorf("overview with a signed-out cookie = %d, want 303", w.Code)
		}
	})
}

func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestPages(t *testing.T) {
	tc := newTestConsole(t)
	ck, _ := tc.signIn(t)
	tc.log.ch <- audit.Record{Time: fakeNow, RequestID: "r-9", Resource: "app", User: "alice@example.test", Verdict: "allow", Reason: "allowed"}
	tc.hub.add(<-tc.log.ch, fakeNow)
	tests := []struct {
		path string
		want []string
	}{
		{"/console/", []string{"Live requests", "Requests per second, last hour", "<svg", "uem", "app.example.test"}},
		{"/console/live", []string{"2 live requests", "alice@example.test", "req-1", `name="request_id"`}},
		{"/console/live?q=alice", []string{"1 live request ", "req-1"}},
		{"/console/devices", []string{"2 devices", "dev-good"}},
		{"/console/devices?show=problems", []string{"1 device.", "not_compliant"}},
		{"/console/device?ca=corp&id=dev-good", []string{"uem", "compliant", "Revoke device", "req-1"}},
		{"/console/users", []string{"mallory", "eve", "alice@example.test"}},
		{"/console/users?show=risky", []string{"1 user "}},
		{"/console/user?u=alice@example.test", []string{"sess-1", "Revoke user", "No risk reported"}},
		{"/console/decisions", []string{"r-9", "Explain", "data-stream"}},
		{"/console/decisions?verdict=deny", []string{"No decisions yet."}},
		{"/console/explain?resource=app&user=alice@example.test&ca=corp&device=dev-good", []string{"device.not_compliant", "policy.device.compliant"}},
		{"/console/explain?resource=missing", []string{"no resource named"}},
		{"/console/feeds", []string{"uem", "webhook", "silent", "verified"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			w := get(tc, ck, tt.path)
			if w.Code != 200 {
				t.Fatalf("GET %s = %d: %s", tt.path, w.Code, w.Body)
			}
			body := w.Body.String()
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s: no %q in the page", tt.path, s)
				}
			}
			h := w.Header()
			if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("X-Frame-Options") != "DENY" ||
				h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("GET %s: headers %v", tt.path, h)
			}
		})
	}
}

func TestStatic(t *testing.T) {
	tc := newTestConsole(t)
	for _, p := range []string{"/console/static/console.css", "/console/static/console.js"} {
		w := get(tc, nil, p)
		if w.Code != 200 || w.Body.Len() == 0 || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s = %d (%d bytes), headers %v", p, w.Code, w.Body.Len(), w.Header())
		}
	}
	if w := get(tc, nil, "/console/static/nope.js"); w.Code != 404 {
		t.Errorf("missing static file = %d, want 404", w.Code)
	}
}

func TestBadRequests(t *testing.T) {
	tc := newTestConsole(t)
	ck, _ := tc.signIn(t)
	tests := []struct {
		path string
		want int
	}{
		{"/console/devices?page=0", 400},
		{"/console/devices?page=x", 400},
		{"/console/devices?page=100001", 400},
		{"/console/devices?show=bogus", 400},
		{"/console/devices?q=a&q=b", 400},
		{"/console/live?q=%00", 400},
		{"/console/live?q=%ff", 400},
		{"/console/live?unknown=1", 400},
		{"/console/?x=1", 400},
		{"/console/device?ca=corp", 400},
		{"/console/device?ca=corp&id=nope", 404},
		{"/console/user", 400},
		{"/console/decisions?verdict=maybe", 400},
		{"/console/explain", 400},
		{"/console/explain?resource=app&device=d", 400},
		{"/console/explain?resource=app&path=" + strings.Repeat("a", maxParam+1), 400},
		{"/console/nowhere", 404},
		{"/console/devices?page=999", 200}, // past the end: the last page
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if w := get(tc, ck, tt.path); w.Code != tt.want {
				t.Errorf("GET %s = %d, want %d: %s", tt.path, w.Code, tt.want, w.Body)
			}
		})
	}
}

// TestHostileData renders every page over data whose names, ids and
// reasons are markup: none of it may reach the page as markup.
func TestHostileData(t *testing.T) {
	tc := newTestConsole(t)
	ck, _ := tc.signIn(t)
	tc.hub.add(hostileRecord("r-"+hostile), fakeNow)
	q := url.QueryEscape
	paths := []string{
		"/console/", "/console/live", "/console/live?q=" + q(hostile), "/console/devices", "/console/devices?q=" + q(hostile),
		"/console/device?ca=corp&id=" + q("dev-"+hostile), "/console/users", "/console/user?u=" + q("mallory"+hostile),
		"/console/user?u=" + q("eve"+hostile), "/console/decisions", "/console/decisions?user=" + q(hostile),
		"/console/explain?resource=" + q(hostile) + "&user=" + q(hostile), "/console/feeds",
		"/console/devices?show=" + q(hostile), // an error page that names the parameter
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			w := get(tc, ck, p)
			body := w.Body.String()
			if bad := containsAny(body, "<script>alert", "<img src=x", `onerror=alert(1)>`, "<script>"); bad != "" {
				t.Errorf("GET %s: %q reached the page unescaped", p, bad)
			}
			if w.Code == 200 && !strings.Contains(body, "&lt;script&gt;") {
				t.Errorf("GET %s: the hostile string is not on the page, escaped", p)
			}
		})
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		form   url.Values
		target string
		action string
		result string
		back   string
	}{
		{"revoke device", "/console/device/revoke", url.Values{"ca": {"corp"}, "id": {"dev-good"}, "reason": {"stolen"}},
			"corp/dev-good", "revoke_device", "applied", "/console/device?ca=corp&id=dev-good"},
		{"revoke user", "/console/user/revoke", url.Values{"user": {"Alice@Example.test"}},
			"alice@example.test", "revoke_user", "applied", "/console/user?u=alice%40example.test"},
		{"revoke session", "/console/session/revoke", url.Values{"session": {"sess-1"}, "user": {"alice@example.test"}},
			"sess-1", "revoke_session", "applied", "/console/user?u=alice%40example.test"},
		{"close", "/console/live/close", url.Values{"request_id": {"req-1"}}, "req-1", "close_request", "closed", "/console/live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConsole(t)
			ck, csrf := tc.signIn(t)
			form := url.Values{"csrf": {csrf}}
			for k, v := range tt.form {
				form[k] = v
			}
			w := post(tc, ck, tt.path, form, nil)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tt.back {
				t.Fatalf("POST %s = %d to %q, want 303 to %q: %s", tt.path, w.Code, w.Header().Get("Location"), tt.back, w.Body)
			}
			acts := tc.log.Actions()
			if len(acts) != 1 {
				t.Fatalf("actions logged = %v, want one", acts)
			}
			a := acts[0]
			if a.Operator != "admin-token" || a.IdP != "token" || a.Action != tt.action || a.Target != tt.target || a.Result != tt.result || a.RemoteIP == "" {
				t.Errorf("action = %+v", a)
			}
			if tt.action == "close_request" {
				if len(tc.gw.closed) != 1 || tc.gw.closed[0] != "req-1" {
					t.Errorf("closed = %v", tc.gw.closed)
				}
				return
			}
			if len(tc.store.revoked) != 1 || tc.store.revoked[0].Source != "console" || !tc.store.revoked[0].Before.Equal(fakeNow) {
				t.Errorf("revocations = %+v", tc.store.revoked)
			}
		})
	}
}

// TestActionRefusals sends state-changing requests that did not come
// from the console's own page in the operator's session.
func TestActionRefusals(t *testing.T) {
	tc := newTestConsole(t)
	ck, csrf := tc.signIn(t)
	_, otherCSRF := tc.signIn(t)
	// A token one character off (never equal to the real one, whatever
	// its first character is).
	wrong := "x" + csrf[1:]
	if csrf[0] == 'x' {
		wrong = "y" + csrf[1:]
	}
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "ca": {"corp"}, "id": {"dev-good"}}
	}
	tests := []struct {
		name   string
		cookie *http.Cookie
		form   url.Values
		hdr    map[string]string
		want   int
	}{
		{"no session", nil, form(csrf), nil, 401},
		{"no csrf token", ck, url.Values{"ca": {"corp"}, "id": {"dev-good"}}, nil, 403},
		{"wrong csrf token", ck, form(wrong), nil, 403},
		{"another session's token", ck, form(otherCSRF), nil, 403},
		{"cross-site", ck, form(csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site", ck, form(csrf), map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"user-typed", ck, form(csrf), map[string]string{"Sec-Fetch-Site": "none"}, 403},
		{"other origin", ck, form(csrf), map[string]string{"Origin": "http://evil.example"}, 403},
		{"other port", ck, form(csrf), map[string]string{"Origin": "http://example.com:8080"}, 403},
		{"null origin", ck, form(csrf), map[string]string{"Origin": "null"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := post(tc, tt.cookie, "/console/device/revoke", tt.form, tt.hdr)
			if w.Code != tt.want {
				t.Errorf("POST = %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
	if len(tc.store.revoked) != 0 || len(tc.log.Actions()) != 0 {
		t.Errorf("a refused request acted: revocations %v, actions %v", tc.store.revoked, tc.log.Actions())
	}
	// A GET never acts.
	if w := get(tc, ck, "/console/device/revoke?ca=corp&id=dev-good&csrf="+csrf); w.Code == http.StatusSeeOther || len(tc.store.revoked) != 0 {
		t.Errorf("GET of an action = %d, revocations %v", w.Code, tc.store.revoked)
	}
	// A client that is not a browser sends neither header: the token
	// alone lets it through.
	if w := post(tc, ck, "/console/device/revoke", form(csrf), map[string]string{"Origin": "", "Sec-Fetch-Site": ""}); w.Code != http.StatusSeeOther {
		t.Errorf("POST without browser headers = %d, want 303", w.Code)
	}
}

func TestCloseGone(t *testing.T) {
	tc := newTestConsole(t)
	ck, csrf := tc.signIn(t)
	w := post(tc, ck, "/console/live/close", url.Values{"csrf": {csrf}, "request_id": {"gone"}}, nil)
	if w.Code != http.StatusNotFound {
		t.Errorf("closing a request that is not live = %d, want 404", w.Code)
	}
	if a := tc.log.Actions(); len(a) != 1 || a[0].Result != "not_found" {
		t.Errorf("actions = %+v, want one not_found", a)
	}
}

func TestDecisionStream(t *testing.T) {
	tc := newTestConsole(t)
	ck, _ := tc.signIn(t)
	srv := httptest.NewServer(tc.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/console/decisions/stream?verdict=deny", nil)
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line = %q", line)
	}
	// The stream is subscribed once its first bytes arrived.
	tc.hub.add(audit.Record{RequestID: "allowed-one", Verdict: "allow"}, fakeNow) // filtered out
	tc.hub.add(hostileRecord("denied-one"), fakeNow)
	var data string
	for data == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "{}\n" {
			data = d
		}
	}
	if strings.Contains(data, "allowed-one") || !strings.Contains(data, `"request_id":"denied-one"`) {
		t.Errorf("event data = %s", data)
	}
	if strings.Contains(data, "<script>") {
		t.Errorf("event data carries raw markup: %s", data)
	}
	// Without a session, no stream.
	resp2, err := http.Get(srv.URL + "/console/decisions/stream")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("stream without a session = %d, want 401", resp2.StatusCode)
	}
}

func TestRun(t *testing.T) {
	tc := newTestConsole(t)
	tc.log.ch = make(chan audit.Record) // unbuffered: a send returns once Run took it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tc.Run(ctx) }()
	tc.log.ch <- audit.Record{RequestID: "one", Verdict: "deny", Reason: "device.not_compliant"}
	tc.log.ch <- audit.Record{RequestID: "two", Verdict: "allow"}
	tc.log.ch <- audit.Record{RequestID: "three", Verdict: "allow"} // taken only after "two" was added
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	got := tc.hub.recentMatching(func(r *audit.Record) bool { return r.RequestID != "three" }, 10)
	if len(got) != 2 || got[0].RequestID != "two" || got[1].RequestID != "one" {
		t.Errorf("records kept, newest first = %v", got)
	}
	if s := tc.hub.chart(fakeNow, chartBuckets); s.total < 2 || len(s.reasons) != 1 || s.reasons[0].Reason != "device.not_compliant" {
		t.Errorf("chart series = %+v", s)
	}
}

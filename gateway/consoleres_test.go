package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/session"
	"portcullis/posture"
)

// consoleFixture is a gateway with an OIDC provider "corp" and the admin
// console on host console.test for the groups secops and helpdesk; it
// signs users in by sealing session cookies as the provider would.
type consoleFixture struct {
	*fixture
	codec *session.Codec
}

func newConsoleFixture(t *testing.T, consoleExtra string) *consoleFixture {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "session.keys")
	if err := os.WriteFile(keyFile, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An issuer that answers discovery, so that a challenge can name it.
	var op *httptest.Server
	op = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/jwks" {
			io.WriteString(w, `{"keys":[]}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": op.URL, "authorization_endpoint": op.URL + "/auth",
			"token_endpoint": op.URL + "/token", "jwks_uri": op.URL + "/jwks"})
	}))
	t.Cleanup(op.Close)
	fx := newFixture(t, "http://127.0.0.1:1", "[app.test]", "{login: none, device: {certificate: off}}", `admin:
  listen: "off"
  console: {enabled: true, host: console.test, login: corp, groups: [secops, helpdesk]`+consoleExtra+`}
identity:
  session: {key_file: `+keyFile+`}
  oidc:
    - name: corp
      issuer: `+op.URL+`
      client_id: portcullis
      client_secret_file: client.secret
      redirect_url: https://app.test/.portcullis/oidc/callback
`)
	keys, err := session.LoadKeyFile(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	var cfg session.Config
	cfg.ApplyDefaults()
	codec, err := session.NewCodec(session.CookiePrefix+"-corp", keys, cfg, fx.g.store)
	if err != nil {
		t.Fatal(err)
	}
	return &consoleFixture{fixture: fx, codec: codec}
}

// login returns the gateway session cookie of user in groups.
func (cf *consoleFixture) login(t *testing.T, user string, groups ...string) *http.Cookie {
	t.Helper()
	s := cf.codec.New("sess-"+user, time.Now(), time.Time{})
	s.Subject = enforcement.Subject{UserID: user, Email: user, Groups: groups, IdP: "corp", AuthTime: time.Now(), SessionID: "sess-" + user}
	v, err := cf.codec.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	return cf.codec.Cookie(v, s)
}

// do sends a request to the gateway, as a browser on the console's own
// pages would (same-origin), with the given cookies.
func (cf *consoleFixture) do(method, target string, form url.Values, cookies ...*http.Cookie) *http.Response {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	r.Header.Set("Accept", "text/html")
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://console.test")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for _, c := range cookies {
		if c != nil {
			r.AddCookie(c)
		}
	}
	w := httptest.NewRecorder()
	cf.g.ServeHTTP(w, r)
	return w.Result()
}

func consoleCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_console" {
			return c
		}
	}
	return nil
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestConsoleHostGroupGate serves the console on its host through the
// gateway's own pipeline: no login is a challenge, a user in an admin
// group gets the console with a session of their own, a user in none is
// refused with the gateway's 403 page, and every request is in the
// decision log as resource admin.console.
func TestConsoleHostGroupGate(t *testing.T) {
	cf := newConsoleFixture(t, "")
	alice := cf.login(t, "alice@example.test", "staff", "secops")
	bob := cf.login(t, "bob@example.test", "staff")

	tests := []struct {
		name       string
		path       string
		cookie     *http.Cookie
		wantStatus int
		wantIn     string // in the Location header or the body
	}{
		{"no login", "/console/", nil, http.StatusFound, "/.portcullis/oidc/start"},
		{"admin group", "/console/", alice, http.StatusOK, "alice@example.test"},
		{"host root", "/", alice, http.StatusSeeOther, "/console/"},
		{"no admin group", "/console/", bob, http.StatusForbidden, "user.not_in_group"},
		{"no admin group, other page", "/console/devices", bob, http.StatusForbidden, "user.not_in_group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := cf.do("GET", "https://console.test"+tt.path, nil, tt.cookie)
			b, _ := io.ReadAll(resp.Body)
			got := resp.Header.Get("Location") + string(b)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(got, tt.wantIn) {
				t.Errorf("GET %s = %d, want %d with %q in:\n%.600s", tt.path, resp.StatusCode, tt.wantStatus, tt.wantIn, got)
			}
			if c := consoleCookie(resp); (c != nil) != (tt.wantStatus == http.StatusOK) {
				t.Errorf("console cookie %v on a %d answer", c, resp.StatusCode)
			}
		})
	}

	// The admin listener's token sign-in is not offered on the host.
	if resp := cf.do("POST", "https://console.test/console/login", url.Values{"token": {"x"}}, alice); resp.StatusCode != http.StatusNotFound {
		t.Errorf("token sign-in on the console host = %d, want 404", resp.StatusCode)
	}

	waitFor(t, "the decision records", func() bool { return countLines(t, cf.records) >= len(tests)+1 })
	b, _ := os.ReadFile(cf.records)
	var verdicts []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct{ Resource, User, Verdict, Reason string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Resource != consoleResource {
			t.Errorf("a console request recorded as resource %q", rec.Resource)
		}
		verdicts = append(verdicts, rec.User+" "+rec.Verdict+" "+rec.Reason)
	}
	want := []string{" login user.login_required", "alice@example.test allow allowed", "alice@example.test allow allowed",
		"bob@example.test deny user.not_in_group", "bob@example.test deny user.not_in_group", "alice@example.test allow allowed"}
	if strings.Join(verdicts, "\n") != strings.Join(want, "\n") {
		t.Errorf("decision records:\n%s\nwant:\n%s", strings.Join(verdicts, "\n"), strings.Join(want, "\n"))
	}
}

// TestConsoleHostActions: an operator from an admin group revokes a
// device on the console host with the CSRF token of the session the
// console gave them; the admin_action names that user. A cross-site form,
// a form of another operator's session, and a token session from the
// admin listener are refused.
func TestConsoleHostActions(t *testing.T) {
	cf := newConsoleFixture(t, "")
	alice := cf.login(t, "alice@example.test", "helpdesk")
	carol := cf.login(t, "carol@example.test", "secops")

	page := func(ck *http.Cookie) (*http.Cookie, string) {
		t.Helper()
		resp := cf.do("GET", "https://console.test/console/device?ca=corp&id="+testDeviceID, nil, ck)
		b, _ := io.ReadAll(resp.Body)
		m := csrfField.FindSubmatch(b)
		cc := consoleCookie(resp)
		if resp.StatusCode != http.StatusOK || m == nil || cc == nil {
			t.Fatalf("device page = %d, csrf %q, cookie %v:\n%.400s", resp.StatusCode, m, cc, b)
		}
		if !cc.Secure || !cc.HttpOnly || cc.SameSite != http.SameSiteStrictMode {
			t.Errorf("console cookie %+v: want Secure, HttpOnly, SameSite=Strict", cc)
		}
		return cc, string(m[1])
	}
	key := posture.DeviceKey{CA: "corp", ID: testDeviceID}
	if _, err := cf.g.store.ApplyPosture(context.Background(), []posture.PostureEvent{{Key: key, Posture: posture.Posture{
		Source: "uem", EventID: "e1", Managed: true, Compliance: posture.Compliant, State: posture.StateActive, ObservedAt: time.Now(),
	}}}); err != nil {
		t.Fatal(err)
	}
	aliceConsole, aliceCSRF := page(alice)
	_, carolCSRF := page(carol)

	revoke := func(csrf string, hdr map[string]string, cookies ...*http.Cookie) int {
		form := url.Values{"ca": {"corp"}, "id": {testDeviceID}, "reason": {"lost laptop"}, "csrf": {csrf}}
		r := httptest.NewRequest("POST", "https://console.test/console/device/revoke", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://console.test")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		cf.g.ServeHTTP(w, r)
		return w.Code
	}
	refusals := []struct {
		name    string
		csrf    string
		hdr     map[string]string
		cookies []*http.Cookie
	}{
		{"cross-site", aliceCSRF, map[string]string{"Sec-Fetch-Site": "cross-site"}, []*http.Cookie{alice, aliceConsole}},
		{"other origin", aliceCSRF, map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, []*http.Cookie{alice, aliceConsole}},
		{"another operator's form", carolCSRF, nil, []*http.Cookie{alice, aliceConsole}},
		{"console session of another login", aliceCSRF, nil, []*http.Cookie{carol, aliceConsole}},
		{"no login", aliceCSRF, nil, []*http.Cookie{aliceConsole}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if code := revoke(tt.csrf, tt.hdr, tt.cookies...); code < 300 || code == http.StatusSeeOther {
				t.Errorf("revoke = %d, want a refusal", code)
			}
			if cf.g.store.DeviceRevocation(key) != nil {
				t.Fatal("the device was revoked")
			}
		})
	}

	if code := revoke(aliceCSRF, nil, alice, aliceConsole); code != http.StatusSeeOther {
		t.Fatalf("revoke = %d, want 303", code)
	}
	if rv := cf.g.store.DeviceRevocation(key); rv == nil || rv.Source != "console" {
		t.Fatalf("revocation %+v, want one from the console", rv)
	}
	waitFor(t, "the admin_action", func() bool {
		b, _ := os.ReadFile(cf.records)
		return strings.Contains(string(b), `"msg":"admin_action","operator":"alice@example.test","idp":"corp","action":"revoke_device"`)
	})
}

// TestConsoleHostNeedsOperator: the console's host handler refuses a
// request the gateway did not decide (no operator in its context).
func TestConsoleHostNeedsOperator(t *testing.T) {
	cf := newConsoleFixture(t, "")
	w := httptest.NewRecorder()
	cf.g.console.HostHandler().ServeHTTP(w, httptest.NewRequest("GET", "https://console.test/console/", nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("host handler without an operator = %d, want 403", w.Code)
	}
}

package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/chromedp/chromedp"
)

// dexEnv is a gateway whose resources log in with a real Dex.
type dexEnv struct {
	*env
	dexPort int
	gw      *gatewayProc
}

const dexConfig = `issuer: http://127.0.0.1:{{.DexPort}}/dex
storage: {type: memory}
web: {http: 127.0.0.1:{{.DexPort}}}
logger: {level: info, format: text}
oauth2: {skipApprovalScreen: true}
enablePasswordDB: true
staticPasswords:
- email: alice@example.test
  hash: "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"
  username: alice
  userID: 08a8684b-db88-4b73-90a9-3cd1661f5466
staticClients:
- id: portcullis
  secret: portcullis-secret
  name: Portcullis
  redirectURIs: [https://localhost:{{.Port}}/.portcullis/oidc/callback]
`

const oidcGatewayConfig = `
listen:
  - address: 127.0.0.1:{{.Port}}
    client_auth: "off"
admin: {listen: "{{.Admin}}"}
state: {dir: state}
tls:
  certificates: [{cert: server.pem, key: server.key}]
identity:
  session: {lifetime: {{.Lifetime}}}
  oidc:
    - name: dex
      issuer: http://127.0.0.1:{{.DexPort}}/dex
      client_id: portcullis
      client_secret_file: dex.secret
      redirect_url: https://localhost:{{.Port}}/.portcullis/oidc/callback
resources:
  - name: admin
    hosts: [localhost]
    paths: [/admin]
    upstream: {{.Upstream}}
    policy:
      login: dex
      device: {certificate: "off"}
      user: {groups: [admins]}
  - name: app
    hosts: [localhost]
    upstream: {{.Upstream}}
    policy: {login: dex, device: {certificate: "off"}}
  - name: app2
    hosts: [127.0.0.1]
    upstream: {{.Upstream}}
    policy: {login: dex, device: {certificate: "off"}}
`

func startDex(t *testing.T, lifetime string) *dexEnv {
	t.Helper()
	return startDexWith(t, dexConfig, oidcGatewayConfig, map[string]any{"Lifetime": lifetime})
}

// startDexWith starts Dex with the configuration template dexTmpl and the
// gateway with gwTmpl; both see Port, Admin, Upstream and DexPort, and
// vars.
func startDexWith(t *testing.T, dexTmpl, gwTmpl string, vars map[string]any) *dexEnv {
	t.Helper()
	bin, err := filepath.Abs("../bin/dex")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		missingPeer(t, "bin/dex is missing (.ci/run builds it; or cd tools/dex && go build -o ../../bin/dex github.com/dexidp/dex/cmd/dex)")
	}
	e := &dexEnv{env: newEnv(t), dexPort: freePort(t)}
	all := map[string]any{"Port": e.port, "Admin": e.admin, "Upstream": e.upstream, "DexPort": e.dexPort}
	for k, v := range vars {
		all[k] = v
	}
	render := func(name, tmpl string) string {
		var b bytes.Buffer
		template.Must(template.New("").Parse(tmpl)).Execute(&b, all)
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dexCfg := render("dex.yaml", dexTmpl)
	render("dex.secret", "portcullis-secret\n")
	render("portcullis.yaml", gwTmpl)

	var dexLog bytes.Buffer
	cmd := exec.Command(bin, "serve", dexCfg)
	cmd.Stdout, cmd.Stderr = &dexLog, &dexLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dex output:\n%s", dexLog.String())
		}
	})
	disc := fmt.Sprintf("http://127.0.0.1:%d/dex/.well-known/openid-configuration", e.dexPort)
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(disc)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dex not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.gw = e.start()
	return e
}

// browser returns a chromedp context on headless Chromium.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := requirePeer(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}

func TestOIDCDexBrowser(t *testing.T) {
	e := startDex(t, "1h")
	ctx := browser(t)
	app := e.url("/hello")
	app2 := fmt.Sprintf("https://127.0.0.1:%d/two", e.port)

	var body, loc string
	// Login: the resource sends the browser to Dex, the form signs in,
	// and the upstream sees the user.
	err := chromedp.Run(ctx,
		chromedp.Navigate(app),
		chromedp.WaitVisible(`input[name=login]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=login]`, "alice@example.test", chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, "password", chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`body`, chromedp.ByQuery),
		chromedp.Location(&loc),
	)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	waitBody := func(want string) string {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; {
			if err := chromedp.Run(ctx, chromedp.Text(`body`, &body, chromedp.ByQuery), chromedp.Location(&loc)); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(body, want) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("page %s never showed %q:\n%s", loc, want, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitBody(`"X-Portcullis-User":"alice@example.test"`)
	if !strings.HasPrefix(loc, app) {
		t.Errorf("after login at %s, want %s", loc, app)
	}
	if strings.Contains(body, "__Host-pc_") {
		t.Errorf("session cookie reached the upstream: %s", body)
	}

	// Group denied.
	if err := chromedp.Run(ctx, chromedp.Navigate(e.url("/admin"))); err != nil {
		t.Fatal(err)
	}
	waitBody("user.not_in_group")

	// A second host shares the login without a second sign-in.
	if err := chromedp.Run(ctx, chromedp.Navigate(app2)); err != nil {
		t.Fatal(err)
	}
	waitBody(`"X-Portcullis-User":"alice@example.test"`)
	if !strings.HasPrefix(loc, app2) {
		t.Errorf("second host ended at %s, want %s", loc, app2)
	}

	// Logout ends the session on both hosts. A GET only asks; the
	// confirmation form's POST logs out.
	if err := chromedp.Run(ctx, chromedp.Navigate(e.url("/.portcullis/logout")),
		chromedp.WaitVisible(`#logout-confirm`, chromedp.ByQuery), chromedp.Evaluate(`document.getElementById("logout-confirm").click()`, nil),
		chromedp.WaitVisible(`#signed-out`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitBody("signed out")
	for _, u := range []string{app, app2} {
		if err := chromedp.Run(ctx, chromedp.Navigate(u), chromedp.WaitVisible(`body`, chromedp.ByQuery), chromedp.Location(&loc)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(loc, fmt.Sprintf("127.0.0.1:%d/dex/", e.dexPort)) {
			t.Errorf("after logout %s went to %s, want the Dex login", u, loc)
		}
	}
}

// httpLogin drives the code flow with a plain client up to the callback
// URL Dex redirects to, which it returns without following.
func httpLogin(t *testing.T, e *dexEnv, c *http.Client, start string) string {
	t.Helper()
	next := start
	for range 10 {
		resp, err := c.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode == 200 && strings.Contains(next, "/dex/auth/local") {
			// The login form: post the credentials to the same URL.
			resp, err = c.PostForm(next, url.Values{"login": {"alice@example.test"}, "password": {"password"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc = resp.Header.Get("Location")
		}
		if loc == "" {
			t.Fatalf("%s: status %d and no redirect", next, resp.StatusCode)
		}
		u, _ := resp.Request.URL.Parse(loc)
		if strings.Contains(u.Path, "/.portcullis/oidc/callback") {
			return u.String()
		}
		next = u.String()
	}
	t.Fatal("no callback after 10 redirects")
	return ""
}

func (e *dexEnv) jarClient(t *testing.T) *http.Client {
	c := e.client("", "", false)
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func get(t *testing.T, c *http.Client, u string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func TestOIDCDexLoginState(t *testing.T) {
	e := startDex(t, "4s")
	start := func(c *http.Client) string {
		code, loc, body := get(t, c, e.url("/hello"))
		if code != http.StatusFound || !strings.Contains(loc, "/.portcullis/oidc/start") {
			t.Fatalf("GET /hello = %d %s %s, want a redirect to the login start", code, loc, body)
		}
		return loc
	}

	t.Run("callback in another browser", func(t *testing.T) {
		c := e.jarClient(t)
		cb := httpLogin(t, e, c, start(c))
		code, _, body := get(t, e.jarClient(t), cb)
		if code != http.StatusBadRequest || !strings.Contains(body, "user.login_required") {
			t.Errorf("callback without the state cookie = %d %s, want 400", code, body)
		}
	})
	t.Run("state changed", func(t *testing.T) {
		c := e.jarClient(t)
		cb := httpLogin(t, e, c, start(c))
		u, _ := url.Parse(cb)
		q := u.Query()
		s := []byte(q.Get("state"))
		s[len(s)-1] ^= 1
		q.Set("state", string(s))
		u.RawQuery = q.Encode()
		if code, _, _ := get(t, c, u.String()); code != http.StatusBadRequest {
			t.Errorf("callback with a changed state = %d, want 400", code)
		}
	})
	t.Run("state cookie tampered", func(t *testing.T) {
		c := e.jarClient(t)
		cb := httpLogin(t, e, c, start(c))
		gw, _ := url.Parse(e.url("/"))
		var tampered []*http.Cookie
		for _, ck := range c.Jar.Cookies(gw) {
			if strings.HasPrefix(ck.Name, "__Host-pc_l-") {
				b := []byte(ck.Value)
				b[len(b)/2] ^= 2
				ck.Value = string(b)
				tampered = append(tampered, ck)
			}
		}
		c.Jar.SetCookies(gw, tampered)
		if code, _, _ := get(t, c, cb); code != http.StatusBadRequest {
			t.Errorf("callback with a tampered state cookie = %d, want 400", code)
		}
	})
	t.Run("open redirects", func(t *testing.T) {
		c := e.jarClient(t)
		for _, rd := range []string{
			"https://evil.example/", "//evil.example/", "/\\evil.example/", "http://localhost/",
			"https://user@localhost/", "javascript:alert(1)", "https://localhost.evil.example/", "https://evil.example\\@localhost/",
		} {
			u := e.url("/.portcullis/oidc/start?provider=dex&rd=" + url.QueryEscape(rd))
			if code, loc, _ := get(t, c, u); code != http.StatusBadRequest {
				t.Errorf("start with rd=%q = %d (Location %q), want 400", rd, code, loc)
			}
		}
	})
	t.Run("login, then expiry", func(t *testing.T) {
		c := e.jarClient(t)
		cb := httpLogin(t, e, c, start(c))
		code, loc, _ := get(t, c, cb)
		if code != http.StatusSeeOther || loc != e.url("/hello") {
			t.Fatalf("callback = %d %q, want 303 to %s", code, loc, e.url("/hello"))
		}
		if code, _, body := get(t, c, e.url("/hello")); code != 200 || !strings.Contains(body, "alice@example.test") {
			t.Fatalf("after login GET /hello = %d %s", code, body)
		}
		// A replayed callback is refused: the state cookie is single use.
		if code, _, _ := get(t, c, cb); code != http.StatusBadRequest {
			t.Errorf("replayed callback = %d, want 400", code)
		}
		// The session lives 4s; poll until the gateway asks for a login.
		for deadline := time.Now().Add(15 * time.Second); ; {
			code, loc, _ := get(t, c, e.url("/hello"))
			if code == http.StatusFound && strings.Contains(loc, "/.portcullis/oidc/start") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session never expired: %d %s", code, loc)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	t.Run("api client", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url("/hello"), nil)
		req.Header.Set("Accept", "application/json")
		resp, err := e.jarClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		p := parseProblem(t, string(b))
		if resp.StatusCode != 401 || p.Reason != "user.login_required" || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("API client = %d %+v %q", resp.StatusCode, p, resp.Header.Get("WWW-Authenticate"))
		}
	})
}

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// consoleDexConfig is Dex with two users: alice in the admin group
// secops, bob in staff only. Both passwords are "password".
const consoleDexConfig = `issuer: http://127.0.0.1:{{.DexPort}}/dex
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
  groups: [secops]
- email: bob@example.test
  hash: "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"
  username: bob
  userID: 5c1b7a52-3a7e-4f0e-9d55-7c1c1f7a0b21
  groups: [staff]
staticClients:
- id: portcullis
  secret: portcullis-secret
  name: Portcullis
  redirectURIs: [https://localhost:{{.Port}}/.portcullis/oidc/callback]
`

// consoleSSOGatewayConfig serves the console on host 127.0.0.1 of the
// main listener to Dex users in secops or helpdesk; the login's callback
// is on localhost, so reaching the console takes the cross-host handoff.
const consoleSSOGatewayConfig = `
listen:
  - address: 127.0.0.1:{{.Port}}
    client_auth: "off"
admin:
  listen: "{{.Admin}}"
  token_file: admin.token
  console: {enabled: true, host: 127.0.0.1, login: dex, groups: [secops, helpdesk]}
state: {dir: state}
tls:
  certificates: [{cert: server.pem, key: server.key}]
identity:
  oidc:
    - name: dex
      issuer: http://127.0.0.1:{{.DexPort}}/dex
      client_id: portcullis
      client_secret_file: dex.secret
      redirect_url: https://localhost:{{.Port}}/.portcullis/oidc/callback
      scopes: [openid, email, profile, groups]
resources:
  - name: app
    hosts: [localhost]
    upstream: {{.Upstream}}
    policy: {login: dex, device: {certificate: "off"}}
`

// TestConsoleSSOBrowser signs in to the console host through Dex with
// Chromium: alice, in the admin group, sees the console and revokes bob,
// and the admin_action names her; bob, in no admin group, is refused with
// the gateway's 403 page. Both visits are in the decision log as resource
// admin.console. Screenshots go where TestConsoleBrowser puts them.
func TestConsoleSSOBrowser(t *testing.T) {
	e := startDexWith(t, consoleDexConfig, consoleSSOGatewayConfig, nil)
	console := fmt.Sprintf("https://127.0.0.1:%d/console/", e.port)
	shots := os.Getenv("PORTCULLIS_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	// signIn opens the console in a fresh browser, signs in at Dex as
	// user, and returns the browser once it is back on the console host.
	signIn := func(user string) (func(chromedp.Action) error, func(sel string) string) {
		ctx := browser(t)
		run := func(a chromedp.Action) error { return chromedp.Run(ctx, a) }
		if err := chromedp.Run(ctx,
			chromedp.Navigate(console),
			chromedp.WaitVisible(`input[name=login]`, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=login]`, user, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=password]`, "password", chromedp.ByQuery),
			chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		); err != nil {
			t.Fatalf("%s: login: %v", user, err)
		}
		text := func(sel string) string {
			var s, loc string
			for deadline := time.Now().Add(30 * time.Second); ; {
				err := chromedp.Run(ctx, chromedp.Location(&loc), chromedp.Text(sel, &s, chromedp.ByQuery, chromedp.AtLeast(0)))
				if err == nil && strings.HasPrefix(loc, fmt.Sprintf("https://127.0.0.1:%d/", e.port)) && s != "" {
					return s
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s never showed on the console host (at %s): %v", user, sel, loc, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return run, text
	}

	// bob is in no admin group: the gateway's 403 page.
	_, bobText := signIn("bob@example.test")
	body := bobText("body")
	if !strings.Contains(body, "user.not_in_group") {
		t.Errorf("bob sees:\n%s\nwant the 403 page with user.not_in_group", body)
	}
	if strings.Contains(body, "Revoke") || strings.Contains(body, "Live requests") {
		t.Errorf("bob sees console content:\n%s", body)
	}
	e.gw.waitLog(`"resource":"admin.console","user":"bob@example.test","device":"","device_ca":"","verdict":"deny","reason":"user.not_in_group"`)

	// alice is in secops: the console, with her as the operator.
	run, text := signIn("alice@example.test")
	if who := text(".who"); !strings.Contains(who, "alice@example.test") || !strings.Contains(who, "dex") {
		t.Errorf("signed in as %q, want alice@example.test via dex", who)
	}
	if h1 := text("main h1"); h1 != "Overview" {
		t.Errorf("the console host shows %q, want the overview", h1)
	}
	var png []byte
	if err := run(chromedp.FullScreenshot(&png, 90)); err == nil {
		os.WriteFile(filepath.Join(shots, "sso-overview.png"), png, 0o644)
	}
	// She revokes bob from his user page.
	if err := run(chromedp.Tasks{
		chromedp.Navigate(console + "user?u=bob@example.test"),
		chromedp.WaitVisible(`#reason`, chromedp.ByQuery),
		chromedp.SendKeys(`#reason`, "left the company", chromedp.ByQuery),
		chromedp.Click(`form[action="/console/user/revoke"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#h-rev`, chromedp.ByQuery),
	}); err != nil {
		t.Fatal(err)
	}
	if s := text("main"); !strings.Contains(s, "revoked") || !strings.Contains(s, "left the company") {
		t.Errorf("after the revocation the user page shows:\n%s", s)
	}
	e.gw.waitLog(`"msg":"admin_action","operator":"alice@example.test","idp":"dex","action":"revoke_user","target":"bob@example.test","reason":"left the company","result":"applied"`)
	e.gw.waitLog(`"resource":"admin.console","user":"alice@example.test","device":"","device_ca":"","verdict":"allow"`)
}

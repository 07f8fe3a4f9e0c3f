package test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSAMLThroughGateway: a SAML identity provider declared in the
// configuration file (identity.saml, policy.login: saml:corp) logs a user
// in through the real gateway binary with headless Chromium against
// crewjam's samlidp; group membership decides; the upstream receives the
// user.
func TestSAMLThroughGateway(t *testing.T) {
	_, idpBase := startSamlidp(t)
	e := newEnv(t)
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "resources:\n", fmt.Sprintf(`identity:
  saml:
    - name: corp
      idp_metadata_url: %s/metadata
      root_url: https://localhost:%d
      attributes: {user: uid, email: mail, groups: eduPersonAffiliation}
resources:
  - name: sapp
    hosts: [localhost]
    paths: [/sapp]
    upstream: %s
    policy:
      login: saml:corp
      device: {certificate: "off"}
      user: {groups: [admins]}
`, idpBase, e.port, e.upstream), 1)
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	e.start()

	resp, err := e.client("", "", true).Get(e.url("/.portcullis/saml/corp/metadata"))
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(md), "AssertionConsumerService") {
		t.Fatalf("SP metadata: %d %s", resp.StatusCode, md)
	}
	samlPut(t, idpBase+"/services/portcullis", md)

	login := func(user string) string {
		ctx := samlBrowser(t)
		var text string
		err := chromedp.Run(ctx,
			chromedp.Navigate(e.url("/sapp/hello")),
			chromedp.WaitVisible(`input[name=user]`, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=user]`, user, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=password]`, "pw-"+user, chromedp.ByQuery),
			chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		// Wait until the browser is back on the gateway with an answer:
		// the upstream's JSON, or a deny page.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var loc string
			if err := chromedp.Run(ctx, chromedp.Location(&loc), chromedp.Text(`body`, &text, chromedp.ByQuery)); err == nil &&
				strings.HasPrefix(loc, e.url("/sapp/hello")) && (strings.Contains(text, "headers") || strings.Contains(text, "user.")) {
				return text
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s never got back to the resource; last page: %s", user, text)
		return ""
	}
	if text := login("alice"); !strings.Contains(text, `"X-Portcullis-User":"alice"`) {
		t.Errorf("alice (in admins) sees %s", text)
	}
	if text := login("bob"); !strings.Contains(text, "user.not_in_group") {
		t.Errorf("bob (not in admins) sees %s, want a user.not_in_group denial", text)
	}
}

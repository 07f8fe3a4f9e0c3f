package test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"portcullis/identity/saml"
)

// Fixed addresses: SimpleSAMLphp's SP metadata names the SP's entity id
// and ACS, so the SP's port must be known in advance.
const (
	sspAddr   = "127.0.0.1:19080"
	sspSPAddr = "127.0.0.1:19081"
	sspWWW    = "/usr/share/simplesamlphp/www"
)

// startSimpleSAMLphp runs Debian's SimpleSAMLphp (1.19) under php -S as
// an IdP with users alice (admins) and bob (member), trusting the SP at
// sspSPAddr. It skips when the package is missing, unless CI is set.
func startSimpleSAMLphp(t *testing.T) string {
	t.Helper()
	php, err := exec.LookPath("php")
	if _, serr := os.Stat(sspWWW); err != nil || serr != nil {
		missingPeer(t, "simplesamlphp or php-cli is missing (.ci/run installs them)")
	}
	d := t.TempDir()
	for _, sub := range []string{"config", "metadata", "cert", "tmp", "data"} {
		os.MkdirAll(filepath.Join(d, sub), 0o700)
	}
	key, cert := samlSelfSigned(t, "ssp-idp.test")
	os.WriteFile(filepath.Join(d, "cert/idp.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	os.WriteFile(filepath.Join(d, "cert/idp.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
	base := "http://" + sspAddr
	sp := "https://" + sspSPAddr + saml.PathPrefix + "corp/"
	files := map[string]string{
		"config/config.php": `<?php
require '/etc/simplesamlphp/config.php';
$base = getenv('SSP_DIR');
$config['baseurlpath'] = '` + base + `/';
$config['metadatadir'] = $base . '/metadata/';
$config['certdir'] = $base . '/cert/';
$config['tempdir'] = $base . '/tmp/';
$config['datadir'] = $base . '/data/';
$config['loggingdir'] = $base . '/tmp/';
$config['logging.handler'] = 'errorlog';
$config['secretsalt'] = 'test-salt-not-secret';
$config['auth.adminpassword'] = 'admin';
$config['technicalcontact_email'] = 'ops@example.test';
$config['timezone'] = 'UTC';
$config['enable.saml20-idp'] = true;
$config['session.cookie.secure'] = false;
$config['session.cookie.samesite'] = 'Lax'; // the default, None, needs Secure, which plain http cannot have
$config['module.enable'] = ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true];
`,
		"config/authsources.php": `<?php
$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => ['exampleauth:UserPass',
        'alice:alicepw' => ['uid' => ['alice'], 'mail' => ['alice@example.test'], 'eduPersonAffiliation' => ['admins']],
        'bob:bobpw' => ['uid' => ['bob'], 'mail' => ['bob@example.test'], 'eduPersonAffiliation' => ['member']],
    ],
];
`,
		"metadata/saml20-idp-hosted.php": `<?php
$metadata['` + base + `/saml2/idp/metadata.php'] = [
    'host' => '__DEFAULT__', 'privatekey' => 'idp.key', 'certificate' => 'idp.crt',
    'auth' => 'example-userpass',
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
];
`,
		"metadata/saml20-sp-remote.php": `<?php
$metadata['` + sp + `metadata'] = [
    'AssertionConsumerService' => '` + sp + `acs',
    'SingleLogoutService' => '` + sp + `slo',
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
];
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log, _ := os.Create(filepath.Join(d, "ssp.log"))
	cmd := exec.Command(php, "-S", sspAddr, "-t", sspWWW)
	cmd.Env = append(os.Environ(), "SSP_DIR="+d, "SIMPLESAMLPHP_CONFIG_DIR="+filepath.Join(d, "config"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(d, "ssp.log"))
			t.Logf("ssp.log:\n%s", b)
		}
	})
	md := base + "/saml2/idp/metadata.php"
	for i := 0; ; i++ {
		resp, err := http.Get(md)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i == 100 {
			t.Fatalf("SimpleSAMLphp did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling a child process's port; no event to wait on
	}
	return md
}

func sspLogin(ctx context.Context, start, user, password string) (string, error) {
	var text string
	err := chromedp.Run(ctx,
		chromedp.Navigate(start),
		chromedp.WaitVisible(`input[name=username]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=username]`, user, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#hello, main > p.status`, chromedp.ByQuery), // the resource or a deny page
		chromedp.Text(`body`, &text, chromedp.ByQuery),
	)
	return text, err
}

// TestSAMLSimpleSAMLphpBrowser logs in through SimpleSAMLphp with headless
// Chromium: group-based allow and deny, then SP-initiated single logout
// through the IdP, after which the old session cookie is refused.
func TestSAMLSimpleSAMLphpBrowser(t *testing.T) {
	md := startSimpleSAMLphp(t)
	e := newSAMLEnv(t, md, saml.Attributes{User: "uid", Email: "mail", Groups: "eduPersonAffiliation"}, sspSPAddr)
	ctx := samlBrowser(t)
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	text, err := sspLogin(ctx, e.root+"/app", "alice", "alicepw")
	if err != nil {
		t.Fatalf("alice login: %v", err)
	}
	if !strings.Contains(text, "hello alice groups=admins idp=saml:corp") {
		t.Fatalf("alice sees %q", text)
	}
	var loc, out string
	if err := chromedp.Run(ctx, chromedp.Navigate(e.root+"/.portcullis/saml/corp/logout"),
		chromedp.WaitVisible(`#logout-confirm`, chromedp.ByQuery), chromedp.Evaluate(`document.getElementById("logout-confirm").click()`, nil),
		chromedp.WaitVisible(`#signed-out`, chromedp.ByQuery), chromedp.Location(&loc), chromedp.Text(`body`, &out, chromedp.ByQuery)); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if !strings.HasPrefix(loc, e.root+"/.portcullis/saml/corp/slo?") {
		t.Errorf("logout ended at %s, want our slo endpoint (after the IdP)", loc)
	}
	// Logged out at the IdP too: the next visit asks for the password.
	if err := chromedp.Run(ctx, chromedp.Navigate(e.root+"/app"), chromedp.WaitVisible(`input[name=username]`, chromedp.ByQuery)); err != nil {
		t.Errorf("after logout: %v", err)
	}

	ctx2 := samlBrowser(t)
	text, err = sspLogin(ctx2, e.root+"/app", "bob", "bobpw")
	if err != nil {
		t.Fatalf("bob login: %v", err)
	}
	if !strings.Contains(text, "user.not_in_group") {
		t.Errorf("bob sees %q, want a user.not_in_group denial", text)
	}
}

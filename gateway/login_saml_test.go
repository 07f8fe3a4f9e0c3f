package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	dsig "github.com/russellhaering/goxmldsig"

	"portcullis/certs/devca"
	"portcullis/enforcement"
	"portcullis/identity/saml"
)

// samlIdP runs crewjam's samlidp with a fresh key and the given users
// (name → group).
func samlIdP(t *testing.T, users map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	u, _ := url.Parse(base)
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	cert, _ := x509.ParseCertificate(der)
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: k, Certificate: cert, Store: &samlidp.MemoryStore{}})
	if err != nil {
		t.Fatal(err)
	}
	idp.IDP.LoginURL = idp.IDP.SSOURL
	idp.IDP.SignatureMethod = dsig.RSASHA256SignatureMethod
	hs := &http.Server{Handler: idp}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	for name, group := range users {
		b, _ := json.Marshal(map[string]any{"name": name, "password": "pw", "email": name + "@example.test", "groups": []string{group}})
		put(t, base+"/users/"+name, b)
	}
	return base
}

func put(t *testing.T, u string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", u, resp.Status)
	}
}

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formInput  = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// postForm submits the first form of page with the hidden fields and
// extra.
func postForm(t *testing.T, c *http.Client, page string, extra url.Values) *http.Response {
	t.Helper()
	m := formAction.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in %q", page)
	}
	v := url.Values{}
	for _, in := range formInput.FindAllStringSubmatch(page, -1) {
		v.Set(in[1], html.UnescapeString(in[2]))
	}
	for k, vs := range extra {
		v[k] = vs
	}
	resp, err := c.PostForm(html.UnescapeString(m[1]), v)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// TestBuildSAMLLogins wires the SAML SP into a real gateway snapshot
// with buildLogins and logs in through ServeHTTP: the challenge, the
// SP endpoints as system paths, the session, identity headers upstream,
// group policy, and no gateway cookie reaching the upstream.
func TestBuildSAMLLogins(t *testing.T) {
	idp := samlIdP(t, map[string]string{"alice": "admins", "bob": "staff"})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s groups=%s cookie=%q", r.Header.Get(hdrUser), r.Header.Get(hdrGroups), r.Header.Get("Cookie"))
	}))
	defer up.Close()

	dir := t.TempDir()
	srvCA, err := devca.InitFiles(dir, "server-ca", "Test Server CA")
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, _, _ := srvCA.IssueServer([]string{"localhost"}, time.Hour)
	os.WriteFile(filepath.Join(dir, "s.pem"), sc, 0o600)
	os.WriteFile(filepath.Join(dir, "s.key"), sk, 0o600)
	cfg := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
admin: {listen: "off"}
tls: {certificates: [{cert: s.pem, key: s.key}]}
audit: {output: %s}
resources:
  - name: app
    hosts: ["127.0.0.1"]
    upstream: %s
    policy:
      login: none
      device: {certificate: "off"}
`, filepath.Join(dir, "decisions.log"), up.URL)
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	g, err := New(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go g.audit.Run(ctx)
	t.Cleanup(func() { cancel(); g.store.Close() })

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.ServeHTTP(w, r.WithContext(withConnInfo(r.Context())))
	}))
	root := "https://" + ts.Listener.Addr().String()
	s := g.cur.Load()
	// Until buildLogins calls it and Has knows "saml:NAME", the policy
	// naming the SAML login is compiled here.
	pol, err := enforcement.Compile(enforcement.PolicyConfig{Login: "saml:corp", Device: enforcement.DeviceConfig{Certificate: enforcement.CertOff},
		User: enforcement.UserConfig{Groups: []string{"admins"}}}, enforcement.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	s.resources[0].policy = pol
	s.cfg.Resources[0].Policy.Login = "saml:corp"
	s.cfg.Identity.SAML = []saml.Config{{Name: "corp", IdPMetadataURL: idp + "/metadata", RootURL: root,
		Attributes: saml.Attributes{User: "uid", Groups: "eduPersonAffiliation"}}}
	if err := g.buildLogins(context.Background(), s.cfg, s); err != nil {
		t.Fatal(err)
	}
	if s.logins.Authenticator("saml:corp") == nil || s.system["/.portcullis/saml/corp/acs"] == nil {
		t.Fatal("SAML login not mounted")
	}
	ts.StartTLS()
	defer ts.Close()

	// Register the SP with the IdP from its own metadata endpoint.
	md := readAll(t, mustGet(t, ts.Client(), root+"/.portcullis/saml/corp/metadata"))
	put(t, idp+"/services/portcullis", []byte(md))

	login := func(user string) (int, string) {
		c := ts.Client()
		c.Jar, _ = cookiejar.New(nil)
		c.Transport = acceptHTML{c.Transport}
		resp := mustGet(t, c, root+"/app") // → login → IdP form
		page := readAll(t, resp)
		resp = postForm(t, c, page, url.Values{"user": {user}, "password": {"pw"}}) // → auto-post form
		page = readAll(t, resp)
		resp = postForm(t, c, page, nil) // → ACS → /app
		return resp.StatusCode, readAll(t, resp)
	}
	code, body := login("alice")
	if code != http.StatusOK || !strings.Contains(body, "user=alice groups=admins") {
		t.Fatalf("alice: %d %s", code, body)
	}
	if strings.Contains(body, "__Host-pc_") {
		t.Errorf("gateway cookie reached the upstream: %s", body)
	}
	code, body = login("bob")
	if code != http.StatusForbidden || !strings.Contains(body, "user.not_in_group") {
		t.Errorf("bob: %d %s", code, body)
	}
	// A second build (a reload) reuses the replay cache and metrics.
	if err := g.buildLogins(context.Background(), s.cfg, s); err != nil {
		t.Errorf("rebuild: %v", err)
	}
}

// acceptHTML makes the client look like a browser to content
// negotiation.
type acceptHTML struct{ rt http.RoundTripper }

func (a acceptHTML) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "text/html")
	return a.rt.RoundTrip(r)
}

func mustGet(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

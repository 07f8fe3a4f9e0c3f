package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/crewjam/saml/samlidp"
	dsig "github.com/russellhaering/goxmldsig"

	"portcullis/enforcement"
	"portcullis/identity"
	"portcullis/identity/saml"
	"portcullis/identity/session"
	"portcullis/internal/deny"
	"portcullis/posture"
)

// samlSelfSigned returns a fresh RSA key and self-signed certificate (the
// example certificates in crewjam's repository have expired).
func samlSelfSigned(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return k, c
}

// samlEnv is an SP mounted in an in-test TLS server with a resource
// guarded by the real policy engine and the real posture store (for
// revocations), in front of an IdP.
type samlEnv struct {
	root  string
	sp    *saml.SP
	store *posture.DB
	srv   *httptest.Server
}

// newSAMLEnv starts the SP with the IdP metadata at mdURL. The resource
// /app requires login saml:corp and group "admins".
func newSAMLEnv(t *testing.T, mdURL string, attrs saml.Attributes, addr string) *samlEnv {
	t.Helper()
	dir := t.TempDir()
	store, err := posture.Open(dir, posture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := session.LoadKeyFile(dir+"/session.keys", true)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := session.NewCodec(saml.CookieName("corp"), keys, session.Config{}, store)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := saml.OpenReplayCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replay.Close() })

	srv := httptest.NewUnstartedServer(nil)
	if addr != "" {
		srv.Listener.Close()
		if srv.Listener, err = net.Listen("tcp", addr); err != nil {
			t.Fatal(err)
		}
	}
	e := &samlEnv{root: "https://" + srv.Listener.Addr().String(), store: store, srv: srv}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.sp, err = saml.New(ctx, saml.Config{Name: "corp", IdPMetadataURL: mdURL, RootURL: e.root, Attributes: attrs},
		saml.Options{StateDir: dir, Sessions: codec, Replay: replay, Tracker: saml.NewTracker(), Revoker: store})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := enforcement.Compile(enforcement.PolicyConfig{Login: "saml:corp",
		Device: enforcement.DeviceConfig{Certificate: enforcement.CertOff},
		User:   enforcement.UserConfig{Groups: []string{"admins"}}}, enforcement.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range e.sp.Handlers() {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) {
		in := enforcement.Input{Now: time.Now(), Request: enforcement.Request{Method: r.Method, Host: r.Host, Path: r.URL.Path, Protocol: r.Proto},
			Subject: e.sp.Authenticate(w, r)}
		d := enforcement.Decide(pol, &in)
		switch d.Verdict {
		case enforcement.Allow:
			if strings.Contains(r.Header.Get("Cookie"), "__Host-pc_") {
				http.Error(w, "gateway cookie leaked upstream", http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, `<html><body><p id="hello">hello %s groups=%s idp=%s</p></body></html>`,
				in.Subject.UserID, strings.Join(in.Subject.Groups, ","), in.Subject.IdP)
		case enforcement.Login, enforcement.StepUp:
			e.sp.Challenge(w, r, d, identity.Challenge{RequestID: "req-1", Resource: "app"})
		default:
			deny.Write(w, r, deny.Info{Status: http.StatusForbidden, Reason: string(d.Reason), Resource: "app"})
		}
	})
	srv.Config.Handler = mux
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return e
}

// samlBrowser starts headless Chromium (skipped when it is missing,
// unless CI is set).
func samlBrowser(t *testing.T) context.Context {
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

// startSamlidp runs crewjam's samlidp with fresh keys and two users.
func startSamlidp(t *testing.T) (*samlidp.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	u, _ := url.Parse(base)
	key, cert := samlSelfSigned(t, "samlidp")
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}})
	if err != nil {
		t.Fatal(err)
	}
	idp.IDP.LoginURL = idp.IDP.SSOURL // else the form posts to /login, which never answers the AuthnRequest
	idp.IDP.SignatureMethod = dsig.RSASHA256SignatureMethod
	hs := &http.Server{Handler: idp}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	for _, usr := range []struct{ name, group string }{{"alice", "admins"}, {"bob", "staff"}} {
		body, _ := json.Marshal(map[string]any{"name": usr.name, "password": "pw-" + usr.name,
			"email": usr.name + "@example.test", "groups": []string{usr.group}})
		samlPut(t, base+"/users/"+usr.name, body)
	}
	return idp, base
}

func samlPut(t *testing.T, u string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", u, resp.Status)
	}
}

// registerSP gives the IdP the SP's metadata, as served by the SP.
func (e *samlEnv) registerSP(t *testing.T, idpBase string) {
	t.Helper()
	c := e.srv.Client()
	resp, err := c.Get(e.root + "/.portcullis/saml/corp/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("SP metadata: %s", resp.Status)
	}
	samlPut(t, idpBase+"/services/portcullis", md)
}

func samlidpLogin(ctx context.Context, start, user, password string) (string, error) {
	var text string
	err := chromedp.Run(ctx,
		chromedp.Navigate(start),
		chromedp.WaitVisible(`input[name=user]`, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=user]`, user, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#hello, main > p.status`, chromedp.ByQuery), // the resource or a deny page
		chromedp.Text(`body`, &text, chromedp.ByQuery),
	)
	return text, err
}

// TestSAMLSamlidpBrowser logs users in through crewjam's samlidp with
// headless Chromium: a member of the required group reaches the
// resource, a non-member is denied by policy, and logout revokes the
// session server side.
func TestSAMLSamlidpBrowser(t *testing.T) {
	_, idpBase := startSamlidp(t)
	e := newSAMLEnv(t, idpBase+"/metadata", saml.Attributes{User: "uid", Email: "mail", Groups: "eduPersonAffiliation"}, "")
	e.registerSP(t, idpBase)

	ctx := samlBrowser(t)
	text, err := samlidpLogin(ctx, e.root+"/app", "alice", "pw-alice")
	if err != nil {
		t.Fatalf("alice login: %v", err)
	}
	if !strings.Contains(text, "hello alice groups=admins idp=saml:corp") {
		t.Fatalf("alice sees %q", text)
	}
	var cookies []*network.Cookie
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{e.root + "/app"}).Do(ctx)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	var sess string
	for _, c := range cookies {
		if c.Name == saml.CookieName("corp") {
			sess = c.Value
			if !c.Secure || !c.HTTPOnly {
				t.Errorf("session cookie flags: %+v", c)
			}
		}
	}
	if sess == "" {
		t.Fatal("no session cookie in the browser")
	}
	// The same cookie works from another client until logout.
	if code := e.getWithSession(t, sess); code != http.StatusOK {
		t.Fatalf("session cookie from a client: %d", code)
	}
	// A GET of the logout URL (a link from anywhere) only asks.
	if err := chromedp.Run(ctx, chromedp.Navigate(e.root+"/.portcullis/saml/corp/logout"),
		chromedp.WaitVisible(`#logout-confirm`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if code := e.getWithSession(t, sess); code != http.StatusOK {
		t.Fatalf("after the logout GET the cookie gives %d, want 200", code)
	}
	var out string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("logout-confirm").click()`, nil),
		chromedp.WaitVisible(`#signed-out`, chromedp.ByQuery), chromedp.Text(`body`, &out, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if code := e.getWithSession(t, sess); code != http.StatusFound {
		t.Errorf("after logout the old cookie gives %d, want 302 to login", code)
	}

	// bob is not in "admins": logged in, then denied by policy.
	ctx2 := samlBrowser(t)
	text, err = samlidpLogin(ctx2, e.root+"/app", "bob", "pw-bob")
	if err != nil {
		t.Fatalf("bob login: %v", err)
	}
	if !strings.Contains(text, "user.not_in_group") {
		t.Errorf("bob sees %q, want a user.not_in_group denial", text)
	}
}

// getWithSession requests /app with only the given session cookie.
func (e *samlEnv) getWithSession(t *testing.T, value string) int {
	t.Helper()
	c := e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	req, _ := http.NewRequest("GET", e.root+"/app", nil)
	req.Header.Set("Cookie", saml.CookieName("corp")+"="+value)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

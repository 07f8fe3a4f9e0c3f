package test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"portcullis/certs/devca"
)

// TestUpstreamProtocols proxies to an h2c upstream and to an https upstream
// whose certificate chains to a CA given in upstream_tls.ca_file.
func TestUpstreamProtocols(t *testing.T) {
	e := newEnv(t)
	proto := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil) }

	h2c := &http.Server{Handler: http.HandlerFunc(proto), Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h2c.Serve(ln)
	defer h2c.Close()

	ca, err := devca.InitFiles(t.TempDir(), "up", "Upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tlsUp := httptest.NewUnstartedServer(http.HandlerFunc(proto))
	tlsUp.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	tlsUp.EnableHTTP2 = true
	tlsUp.StartTLS()
	defer tlsUp.Close()

	e.writeConfig(fmt.Sprintf(`  - name: h2c
    hosts: [localhost]
    paths: [/h2c]
    upstream: h2c://%s
    policy: {device: {certificate: "off"}}
  - name: tls
    hosts: [localhost]
    paths: [/tls]
    upstream: %s
    upstream_tls: {ca_file: %s}
    policy: {device: {certificate: "off"}}
  - name: tls-untrusted
    hosts: [localhost]
    paths: [/untrusted]
    upstream: %s
    policy: {device: {certificate: "off"}}
`, ln.Addr(), tlsUp.URL, ca.CertFile(), tlsUp.URL))
	e.start()
	c := e.client("", "", true)
	for path, want := range map[string]string{"/h2c": "HTTP/2.0 tls=false", "/tls": "HTTP/2.0 tls=true"} {
		resp, err := c.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(body); resp.StatusCode != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, got, want)
		}
	}
	resp, err := c.Get(e.url("/untrusted"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Errorf("upstream with an untrusted certificate: %d, want 502", resp.StatusCode)
	}
}

// TestListenerModes: a redirect listener, and a per-SNI override that
// makes one host require a certificate in the TLS handshake itself.
func TestListenerModes(t *testing.T) {
	e := newEnv(t)
	redirect := freePort(t)
	cfg := fmt.Sprintf("listen:\n  - address: 127.0.0.1:%d\n    client_auth: optional\n    hosts: {localhost: required}\n  - address: 127.0.0.1:%d\n    redirect: true\n", e.port, redirect)
	b, _ := os.ReadFile(e.cfgPath)
	s := string(b)
	i := strings.Index(s, "admin:")
	os.WriteFile(e.cfgPath, []byte(cfg+s[i:]), 0o600)
	g := e.start()
	e.setCompliantVia("127.0.0.1", e.dev1ID, true)

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(fmt.Sprintf("http://localhost:%d/a?b=c", redirect))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 308 || loc != fmt.Sprintf("https://localhost:%d/a?b=c", e.port) {
		t.Errorf("redirect: %d %q", resp.StatusCode, loc)
	}

	// SNI localhost requires a certificate: without one the handshake fails.
	if _, err := e.client("", "", true).Get(e.url("/public/x")); err == nil {
		t.Error("SNI localhost without a certificate: handshake succeeded, want failure")
	}
	// The rogue certificate does not verify: the handshake fails too.
	if _, err := e.client(e.rogueCert, e.rogueKey, true).Get(e.url("/")); err == nil {
		t.Error("SNI localhost with a rogue certificate: handshake succeeded")
	}
	resp, err = e.client(e.dev1Cert, e.dev1Key, true).Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("SNI localhost with the device certificate: %d", resp.StatusCode)
	}
	// The decision record names resource, device, user and verdict.
	g.waitLog(`"device":"` + e.dev1ID + `"`)
	var rec map[string]any
	for _, l := range strings.Split(g.logs(), "\n") {
		if strings.Contains(l, `"msg":"decision"`) && strings.Contains(l, e.dev1ID) {
			json.Unmarshal([]byte(l), &rec)
		}
	}
	if rec["resource"] != "app" || rec["user"] != e.dev1User || rec["verdict"] != "allow" || rec["reason"] != "allowed" || rec["request_id"] == "" {
		t.Errorf("decision record = %v", rec)
	}
}

// setCompliantVia posts a posture event to the feed on host (by IP, so
// the SNI-based certificate requirement of "localhost" does not apply).
func (e *env) setCompliantVia(host, device string, compliant bool) {
	e.t.Helper()
	tc := &tls.Config{RootCAs: poolFrom(e.t, e.serverCA), ServerName: host}
	id := "evt-" + uuid4()
	now := time.Now()
	body := postureEvent(id, device, compliant, now)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://%s:%d/.portcullis/feeds/uem", host, e.port), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", signFeed(e.feedKey, id, now, body))
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tc}}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("feed post via %s: %d", host, resp.StatusCode)
	}
}

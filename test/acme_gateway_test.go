package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestGatewayACME: the gateway obtains its certificate from Pebble and
// serves it on a listener that requires device certificates, over TCP and
// HTTP/3; it keeps serving, across a restart too, while Pebble is down.
func TestGatewayACME(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pebble")
	}
	peb := startPebble(t, 7776000)
	root := peb.root(t)
	e := newEnv(t)
	const name = "app.portcullis.test"
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "    client_auth: optional\n", "    client_auth: required\n", 1)
	cfg = strings.Replace(cfg, "tls:\n  certificates: [{cert: server.pem, key: server.key}]\n",
		fmt.Sprintf("tls:\n  certificates: [{cert: server.pem, key: server.key}]\n  acme: {email: ops@example.test, ca: %q, ca_root: %q, domains: [%s], challenges: [http-01], http_port: %d}\n",
			peb.dir+"/dir", peb.tlsCert, name, freePort(t)), 1)
	cfg = strings.Replace(cfg, "    hosts: [localhost, 127.0.0.1]\n", "    hosts: [localhost, 127.0.0.1, "+name+"]\n", 1)
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	// The feed endpoint is on this listener, which now requires device
	// certificates: record the posture before starting instead.
	if out, code := run(t, binPath, "posture", "set", "--config", e.cfgPath, "--device", e.dev1ID); code != 0 {
		t.Fatalf("posture set: %s", out)
	}
	g := e.start()

	device := clientCert(t, e.dev1Cert, e.dev1Key)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", e.port))
	}
	tcp := func(withCert bool) (*http.Response, error) {
		tc := &tls.Config{RootCAs: root, ServerName: name}
		if withCert {
			tc.Certificates = []tls.Certificate{device}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DialContext: dial, ForceAttemptHTTP2: true}}
		return c.Get(fmt.Sprintf("https://%s:%d/", name, e.port))
	}
	var resp *http.Response
	var err error
	waitUntil(t, 60*time.Second, "the ACME certificate on the gateway", func() bool {
		resp, err = tcp(true)
		return err == nil
	})
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("TCP with device certificate: %d %s", resp.StatusCode, resp.Proto)
	}
	if _, err := tcp(false); err == nil {
		t.Errorf("TCP without device certificate: handshake succeeded on a required listener")
	}

	h3 := func() error {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: root, ServerName: name, Certificates: []tls.Certificate{device}}}
		defer tr.Close()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", e.port), nil)
		req.Host = name
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" {
			return fmt.Errorf("%d %s", resp.StatusCode, resp.Proto)
		}
		return nil
	}
	if err := h3(); err != nil {
		t.Errorf("HTTP/3 with the ACME certificate: %v", err)
	}

	// The ACME server goes away: handshakes keep working, and so does a
	// restart, from the certificate in the state directory.
	peb.stop()
	if resp, err := tcp(true); err != nil {
		t.Errorf("with Pebble down: %v", err)
	} else {
		resp.Body.Close()
	}
	g.stop()
	e.start()
	if resp, err := tcp(true); err != nil {
		t.Errorf("after a restart with Pebble down: %v", err)
	} else {
		resp.Body.Close()
	}
	if err := h3(); err != nil {
		t.Errorf("HTTP/3 after a restart with Pebble down: %v", err)
	}
}

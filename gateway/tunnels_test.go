package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis/certs/devca"
	"portcullis/gateway/tunnel"
	"portcullis/internal/conf"
	"portcullis/posture"
)

// tunnelEnv is a running gateway (listeners included) with two tunnel
// resources: "corp" at proxy host localhost, which reaches loopback
// (allowed explicitly) at most twice per user, and "strict" at proxy
// host 127.0.0.1 (no SNI), which allows names but no loopback.
type tunnelEnv struct {
	g       *Gateway
	addr    string // TCP listener
	h3addr  string // UDP listener
	roots   *x509.CertPool
	device  tls.Certificate
	audit   string
	echo    string // a TCP echo server, host:port
	stopped chan struct{}
	stop    func()
}

const tunnelDevice = "6c0a3d2e-1f4b-4e8a-9c7d-5b2a1e0f3c4d"

func startTunnelEnv(t testing.TB) *tunnelEnv {
	t.Helper()
	dir := t.TempDir()
	srv, err := devca.InitFiles(dir, "server-ca", "Tunnel Test Server CA")
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, _, err := srv.IssueServer([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dca, err := devca.InitFiles(dir, "device-ca", "Tunnel Test Device CA")
	if err != nil {
		t.Fatal(err)
	}
	dc, dk, _, err := dca.IssueDevice(tunnelDevice, "tina@example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	device, err := tls.X509KeyPair(dc, dk)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "s.pem"), sc, 0o600)
	os.WriteFile(filepath.Join(dir, "s.key"), sk, 0o600)
	echo := startEcho(t)
	cfg := `
listen: [{address: "127.0.0.1:0", client_auth: optional}]
admin: {listen: "off"}
tls: {certificates: [{cert: s.pem, key: s.key}]}
audit: {output: decisions.log}
shutdown_timeout: 1s
devices:
  cas:
    - name: corp
      bundle: device-ca.pem
      device_id: {from: uri_san, pattern: '^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$'}
      user: {from: email_san}
tunnels:
  - name: corp
    hosts: [localhost]
    destinations: ["127.0.0.0/8:*", "10.0.0.0/8:22"]
    allow: {loopback: true}
    max_per_user: 2
    policy:
      device: {certificate: required, managed: true, compliant: true}
  - name: strict
    hosts: [127.0.0.1]
    destinations: ["localhost:*", "127.0.0.0/8:*"]
    policy:
      device: {certificate: required, managed: true, compliant: true}
`
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	g, stopGateway := runGateway(t, path)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CertPEM())
	e := &tunnelEnv{g: g, addr: g.Addr("https0"), h3addr: g.Addr("h3_0"), roots: roots, device: device,
		audit: filepath.Join(dir, "decisions.log"), echo: echo, stopped: make(chan struct{})}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			stopGateway()
			close(e.stopped)
		})
	}
	t.Cleanup(e.stop)
	e.setCompliant(t, true)
	return e
}

// startEcho runs a TCP server that writes back what it reads.
func startEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

var postureSeq int

func (e *tunnelEnv) setCompliant(t testing.TB, ok bool) {
	t.Helper()
	c := posture.NotCompliant
	if ok {
		c = posture.Compliant
	}
	postureSeq++
	// A later second than any earlier report: ties keep the stricter.
	at := time.Now().Add(time.Duration(postureSeq) * time.Second)
	if _, err := e.g.store.ApplyPosture(context.Background(), []posture.PostureEvent{{
		Key: posture.DeviceKey{CA: "corp", ID: tunnelDevice},
		Posture: posture.Posture{Source: "uem", EventID: fmt.Sprint("e", postureSeq), Managed: true, Compliance: c,
			State: posture.StateActive, ObservedAt: at},
	}}); err != nil {
		t.Fatal(err)
	}
}

// client returns a tunnel client for proxy host (localhost or 127.0.0.1)
// over transport, presenting the device certificate.
func (e *tunnelEnv) client(t testing.TB, host string, tr tunnel.Transport) *tunnel.Client {
	_, port, _ := net.SplitHostPort(e.addr)
	_, port3, _ := net.SplitHostPort(e.h3addr)
	c := &tunnel.Client{Proxy: net.JoinHostPort(host, port), ProxyH3: "127.0.0.1:" + port3, Transport: tr,
		TLS: &tls.Config{RootCAs: e.roots, Certificates: []tls.Certificate{e.device}}}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialH1 opens a tunnel over HTTP/1.1: it returns the connection after
// a 200, or the status line and headers of a refusal.
func (e *tunnelEnv) dialH1(t *testing.T, sni, target string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.roots, ServerName: sni, Certificates: []tls.Certificate{e.device}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, resp
	}
	return &bufConn{Conn: c, r: br}, resp
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// dial opens a tunnel to target through proxy host "localhost" over
// proto: "HTTP/1.1", "HTTP/2" or "HTTP/3".
func (e *tunnelEnv) dial(t *testing.T, proto, target string) (net.Conn, error) {
	t.Helper()
	switch proto {
	case "HTTP/1.1":
		c, resp := e.dialH1(t, "localhost", target)
		if c == nil {
			ps, _ := tunnel.ParseProxyStatus(resp.Header.Get("Proxy-Status"))
			return nil, &tunnel.DenyError{Status: resp.StatusCode, ProxyStatus: ps}
		}
		return c, nil
	case "HTTP/2":
		return e.client(t, "localhost", tunnel.TransportH2).Dial(context.Background(), target)
	default:
		return e.client(t, "localhost", tunnel.TransportH3).Dial(context.Background(), target)
	}
}

var tunnelProtos = []string{"HTTP/1.1", "HTTP/2", "HTTP/3"}

// roundTrip writes msg through c and reads the echo.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// TestTunnelCarriesAndCloses opens a tunnel over each protocol, carries
// bytes both ways, and checks that a posture change closes it and that
// its records and metrics say so.
func TestTunnelCarriesAndCloses(t *testing.T) {
	e := startTunnelEnv(t)
	for _, proto := range tunnelProtos {
		t.Run(proto, func(t *testing.T) {
			e.setCompliant(t, true)
			c, err := e.dial(t, proto, e.echo)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			roundTrip(t, c, "hello through "+proto)
			e.setCompliant(t, false)
			// The re-evaluator closes it: the read ends with an error or
			// EOF instead of blocking.
			ended := make(chan error, 1)
			go func() { _, err := c.Read(make([]byte, 1)); ended <- err }()
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("read a byte after the device turned non-compliant")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the tunnel stayed open after the device turned non-compliant")
			}
		})
	}
	waitFor(t, "the tunnels to leave the live registry", func() bool { return e.g.live.Len() == 0 })
	e.stop()
	b, _ := os.ReadFile(e.audit)
	recs := string(b)
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
		open := `"verdict":"allow","reason":"allowed","rule":"","method":"CONNECT","host":"` + e.echo + `","path":"","protocol":"` + proto + `"`
		end := `"verdict":"remediate","reason":"device.not_compliant","rule":"reevaluate:policy.device.compliant","method":"CONNECT","host":"` + e.echo + `","path":"","protocol":"` + proto + `"`
		if !strings.Contains(recs, open) || !strings.Contains(recs, end) {
			t.Errorf("%s: want an open and an end record:\n%s", proto, recs)
		}
	}
	if !strings.Contains(recs, `"event":"tunnel_end","destination":"`+e.echo+`"`) {
		t.Errorf("no end record with its destination:\n%s", recs)
	}
}

// TestTunnelRefusals checks every refusal before a tunnel opens, over
// each protocol: each gets its status and Proxy-Status reason, and none
// reaches the destination.
func TestTunnelRefusals(t *testing.T) {
	e := startTunnelEnv(t)
	_, gwPort, _ := net.SplitHostPort(e.addr)
	tests := []struct {
		name, target string
		status       int
		reason       string
	}{
		{"outside the destinations", "10.1.2.3:80", 403, "tunnel.destination_denied"},
		{"metadata", "169.254.169.254:80", 403, "tunnel.destination_reserved"},
		{"the gateway itself", "127.0.0.1:" + gwPort, 403, "tunnel.destination_reserved"},
		{"unspecified", "0.0.0.0:22", 403, "tunnel.destination_reserved"},
		{"no port", "127.0.0.1", 400, "tunnel.invalid_target"},
		{"octal address", "0177.0.0.1:22", 400, "tunnel.invalid_target"},
	}
	for _, proto := range tunnelProtos {
		for _, tt := range tests {
			if proto != "HTTP/1.1" && tt.status == 400 {
				// x/net's and quic-go's clients refuse an invalid
				// :authority before sending it; the gateway's parser is
				// reached over HTTP/1.1 here and by FuzzParseTarget.
				continue
			}
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				c, err := e.dial(t, proto, tt.target)
				var de *tunnel.DenyError
				if !errors.As(err, &de) {
					if c != nil {
						c.Close()
					}
					t.Fatalf("dial %s = %v, want a refusal", tt.target, err)
				}
				if de.Status != tt.status || de.Reason() != tt.reason {
					t.Errorf("refusal = %d %s, want %d %s", de.Status, de.Reason(), tt.status, tt.reason)
				}
			})
		}
	}
}

// TestTunnelNameResolvingToLoopback: a name allowed by the strict
// tunnel's destinations that resolves to loopback is refused on its
// address, and no device certificate means no tunnel.
func TestTunnelNameResolvingToLoopback(t *testing.T) {
	e := startTunnelEnv(t)
	_, port, _ := net.SplitHostPort(e.echo)
	for _, tr := range []tunnel.Transport{tunnel.TransportH2, tunnel.TransportH3} {
		t.Run(string(tr), func(t *testing.T) {
			c := e.client(t, "127.0.0.1", tr)
			_, err := c.Dial(context.Background(), "localhost:"+port)
			var de *tunnel.DenyError
			if !errors.As(err, &de) || de.Reason() != "tunnel.destination_reserved" {
				t.Fatalf("dial localhost = %v, want tunnel.destination_reserved", err)
			}
			anon := &tunnel.Client{Proxy: c.Proxy, ProxyH3: c.ProxyH3, Transport: tr, TLS: &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}}
			defer anon.Close()
			_, err = anon.Dial(context.Background(), e.echo)
			if !errors.As(err, &de) || de.Status != 403 || de.Reason() != "device.certificate_missing" || de.ProxyStatus.Error != "http_request_denied" {
				t.Fatalf("dial without a certificate = %v, want 403 device.certificate_missing", err)
			}
		})
	}
}

// TestTunnelPerUserLimit: the third tunnel of a user with max_per_user 2
// is refused with 429, and a slot freed by a closed tunnel is given back.
func TestTunnelPerUserLimit(t *testing.T) {
	e := startTunnelEnv(t)
	c := e.client(t, "localhost", tunnel.TransportH2)
	ctx := context.Background()
	a, err := c.Dial(ctx, e.echo)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Dial(ctx, e.echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, "second")
	_, err = c.Dial(ctx, e.echo)
	var de *tunnel.DenyError
	if !errors.As(err, &de) || de.Status != 429 || de.Reason() != "tunnel.user_limit" {
		t.Fatalf("third tunnel = %v, want 429 tunnel.user_limit", err)
	}
	a.Close()
	b.Close()
	waitFor(t, "the tunnels to end", func() bool { return e.g.live.Len() == 0 })
	d, err := c.Dial(ctx, e.echo)
	if err != nil {
		t.Fatalf("a tunnel after two closed: %v", err)
	}
	roundTrip(t, d, "again")
	d.Close()
}

const tunnelConfig = `
tls: {certificates: [{cert: s.pem, key: s.key}]}
tunnels:
  - name: ssh
    hosts: [vpn.example.com]
    destinations: ["10.0.0.0/8:22"]
    policy: {device: {certificate: "off"}}
`

// TestTunnelConfigValidation: tunnel problems are placed at their key and
// line, like every other configuration error; a tunnel-only
// configuration is valid.
func TestTunnelConfigValidation(t *testing.T) {
	if _, err := ParseConfig("c.yaml", []byte(tunnelConfig)); err != nil {
		t.Fatalf("a tunnel-only configuration: %v", err)
	}
	tests := []struct {
		name, yaml, wantKey, wantMsg string
	}{
		{"udp", tunnelConfig + "    protocols: [tcp, udp]\n", "tunnels[0].protocols[1]", `"udp" is not supported yet`},
		{"ip", tunnelConfig + "    protocols: [ip]\n", "tunnels[0].protocols[0]", `"ip" is not supported yet`},
		{"unknown protocol", tunnelConfig + "    protocols: [sctp]\n", "tunnels[0].protocols[0]", "unknown value"},
		{"unknown key", tunnelConfig + "    allow_loopback: true\n", "tunnels[0].allow_loopback", ""},
		{"bad destination", strings.Replace(tunnelConfig, "10.0.0.0/8:22", "10.0.0.1/8:22", 1), "tunnels[0].destinations[0]", "host bits"},
		{"no destinations", strings.Replace(tunnelConfig, `destinations: ["10.0.0.0/8:22"]`, "", 1), "tunnels[0].destinations", "missing"},
		{"no hosts", strings.Replace(tunnelConfig, "hosts: [vpn.example.com]", "", 1), "tunnels[0].hosts", "missing"},
		{"any host", strings.Replace(tunnelConfig, "hosts: [vpn.example.com]", `hosts: ["*"]`, 1), "tunnels[0].hosts[0]", "invalid host"},
		{"negative limit", tunnelConfig + "    max_per_user: -1\n", "tunnels[0].max_per_user", "negative"},
		{"unknown idp", strings.Replace(tunnelConfig, `policy: {device: {certificate: "off"}}`, `policy: {login: okta, device: {certificate: "off"}}`, 1), "tunnels[0].policy.login", "unknown identity provider"},
		{"bad policy", strings.Replace(tunnelConfig, `policy: {device: {certificate: "off"}}`, `policy: {device: {certificate: "off", compliant: true}}`, 1), "tunnels[0].policy.device.compliant", "needs a device certificate"},
		{"name of a resource", minimalConfig + strings.Replace(strings.Replace(tunnelConfig, "name: ssh", "name: app", 1), "tls: {certificates: [{cert: s.pem, key: s.key}]}\n", "", 1), "tunnels[0].name", "already the name of a resource"},
		{"host twice", tunnelConfig + "  - {name: b, hosts: [VPN.example.com], destinations: ['10.0.0.1:22'], policy: {device: {certificate: 'off'}}}\n", "tunnels[1].hosts[0]", "already the proxy host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.yaml))
			var found bool
			for _, e := range conf.Flatten(err) {
				var pe *conf.PosError
				if errors.As(e, &pe) && pe.Key == tt.wantKey && strings.Contains(pe.Msg, tt.wantMsg) {
					found = true
					if pe.Line == 0 {
						t.Errorf("%v has no line", pe)
					}
				}
			}
			if !found {
				t.Errorf("want %s: %s…, got %v", tt.wantKey, tt.wantMsg, err)
			}
		})
	}
}

package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis/gateway/tunnel"
)

// tunnelsConfig adds two tunnel resources to the e2e configuration:
// "corp" at proxy host localhost, which reaches loopback (allowed
// explicitly, as these tests need it), and "strict" at proxy host
// 127.0.0.1 (no SNI), which allows the name localhost but no loopback
// address.
const tunnelsConfig = `
tunnels:
  - name: corp
    hosts: [localhost]
    destinations: ["127.0.0.0/8:*"]
    allow: {loopback: true}
    remediation: https://uem.example.test/self-service
    policy:
      device: {certificate: required, managed: true, compliant: true}
  - name: strict
    hosts: [127.0.0.1]
    destinations: ["localhost:*"]
    policy:
      device: {certificate: required, managed: true, compliant: true}
`

func startTunnelGateway(t *testing.T) (*env, *gatewayProc) {
	t.Helper()
	e := newEnv(t)
	e.writeConfig(tunnelsConfig)
	gw := e.start()
	e.setCompliant(e.dev1ID, true)
	return e, gw
}

// echoServer runs a TCP server that writes back what it reads.
func echoServer(t *testing.T) string {
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
			wg.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	})
	return ln.Addr().String()
}

// TestTunnelCurl: curl, as an independent CONNECT client over HTTP/1.1
// (Debian's curl 7.88 has no --proxy-http2), reaches the upstream
// through a tunnel with the device certificate; without posture it is
// refused with Proxy-Status; a name that resolves to loopback is refused
// by the strict tunnel.
func TestTunnelCurl(t *testing.T) {
	curl := requirePeer(t, "curl")
	e, _ := startTunnelGateway(t)
	proxy := func(host string, cert, key string, target string) (string, string, int) {
		args := []string{"-sS", "-v", "--max-time", "20", "-p", "-x", fmt.Sprintf("https://%s:%d", host, e.port),
			"--proxy-cacert", e.serverCA, "--proxy-cert", cert, "--proxy-key", key, target}
		cmd := exec.Command(curl, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			code = ee.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	out, verbose, code := proxy("localhost", e.dev1Cert, e.dev1Key, e.upstream+"/through/the/tunnel")
	if code != 0 || !strings.Contains(out, `"path":"/through/the/tunnel"`) {
		t.Fatalf("curl through the tunnel: exit %d\n%s\n%s", code, out, verbose)
	}
	// dev2 has no posture record: refused before any 2xx, with the
	// reason in Proxy-Status.
	_, verbose, code = proxy("localhost", e.dev2Cert, e.dev2Key, e.upstream+"/")
	if code == 0 || !strings.Contains(verbose, `Proxy-Status: portcullis; error=http_request_denied; details="device.unknown"`) {
		t.Fatalf("curl with an unknown device: exit %d\n%s", code, verbose)
	}
	upPort := e.upstream[strings.LastIndexByte(e.upstream, ':')+1:]
	_, verbose, code = proxy("127.0.0.1", e.dev1Cert, e.dev1Key, "http://localhost:"+upPort+"/")
	if code == 0 || !strings.Contains(verbose, `details="tunnel.destination_reserved"`) {
		t.Fatalf("curl to a name resolving to loopback: exit %d\n%s", code, verbose)
	}
}

// TestTunnelConnectForward runs `portcullis connect --forward` over
// HTTP/2, HTTP/3 and auto, and fetches the upstream through it; a device
// without posture gets a message with the reason and remediation.
func TestTunnelConnectForward(t *testing.T) {
	e, _ := startTunnelGateway(t)
	upAddr := strings.TrimPrefix(e.upstream, "http://")
	for _, mode := range []string{"h2", "h3", "auto"} {
		t.Run(mode, func(t *testing.T) {
			addr, stderr := e.startConnect(t, mode, e.dev1Cert, e.dev1Key, upAddr)
			resp, err := http.Get("http://" + addr + "/forwarded")
			if err != nil {
				t.Fatalf("GET through connect: %v\n%s", err, stderr())
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"path":"/forwarded"`) {
				t.Fatalf("GET through connect = %d %s\n%s", resp.StatusCode, b, stderr())
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		addr, stderr := e.startConnect(t, "h2", e.dev2Cert, e.dev2Key, upAddr)
		if _, err := http.Get("http://" + addr + "/"); err == nil {
			t.Fatal("GET through a refused tunnel succeeded")
		}
		want := "the gateway refused the tunnel to " + upAddr + ": device.unknown (403)"
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr(), want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("connect did not say why:\n%s", stderr())
			}
		}
		if !strings.Contains(stderr(), "fix it at: https://uem.example.test/self-service") {
			t.Errorf("no remediation link:\n%s", stderr())
		}
	})
}

// startConnect runs `portcullis connect` forwarding a free local port to
// target, and returns that address and the command's stderr so far.
func (e *env) startConnect(t *testing.T, mode, cert, key, target string) (string, func() string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"connect", "--proxy", fmt.Sprintf("localhost:%d", e.port), "--h3-addr", fmt.Sprintf("127.0.0.1:%d", e.port),
		"--forward", addr + "=" + target, "--cert", cert, "--key", key, "--ca", e.serverCA}
	switch mode {
	case "h3":
		args = append(args, "--h3")
	case "auto":
		args = append(args, "--auto")
	}
	cmd := exec.Command(binPath, args...)
	var mu sync.Mutex
	var errb bytes.Buffer
	cmd.Stderr = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return errb.Write(b) })
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// An interrupt, as a user's ^C: connect closes its connections,
		// so the gateway's shutdown need not wait for an HTTP/3
		// connection whose client vanished.
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "forwarding "+addr) {
		t.Fatalf("connect did not start: %q %v\n%s", line, err, errb.String())
	}
	go io.Copy(io.Discard, stdout)
	return addr, func() string { mu.Lock(); defer mu.Unlock(); return errb.String() }
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestTunnelClosedBySignal opens a tunnel over HTTP/1.1 (a raw CONNECT),
// HTTP/2 (x/net's client) and HTTP/3 (quic-go's client), then reports
// the device non-compliant: each tunnel must end within a second of the
// feed's answer, and leave its end record with the bytes it carried.
func TestTunnelClosedBySignal(t *testing.T) {
	e, gw := startTunnelGateway(t)
	echo := echoServer(t)
	tc := &tls.Config{RootCAs: poolFrom(t, e.serverCA), ServerName: "localhost",
		Certificates: []tls.Certificate{clientCert(t, e.dev1Cert, e.dev1Key)}}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2", "HTTP/3"} {
		t.Run(proto, func(t *testing.T) {
			e.setCompliant(e.dev1ID, true)
			var c net.Conn
			switch proto {
			case "HTTP/1.1":
				c = dialH1Tunnel(t, fmt.Sprintf("127.0.0.1:%d", e.port), tc, echo)
			default:
				tr := tunnel.TransportH2
				if proto == "HTTP/3" {
					tr = tunnel.TransportH3
				}
				cl := &tunnel.Client{Proxy: fmt.Sprintf("localhost:%d", e.port), ProxyH3: fmt.Sprintf("127.0.0.1:%d", e.port), TLS: tc, Transport: tr}
				defer cl.Close()
				var err error
				if c, err = cl.Dial(context.Background(), echo); err != nil {
					t.Fatal(err)
				}
			}
			defer c.Close()
			msg := "ping over " + proto
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				t.Fatalf("echo = %q, %v", got, err)
			}
			ended := make(chan time.Time, 1)
			go func() { c.Read(make([]byte, 1)); ended <- time.Now() }()
			// Posture is ordered by whole seconds: setCompliant waits for
			// the next one when needed, which is no part of the latency.
			if last, ok := e.reported[e.dev1ID]; ok {
				time.Sleep(time.Until(last.Truncate(time.Second).Add(time.Second)))
			}
			signalled := time.Now()
			e.setCompliant(e.dev1ID, false)
			select {
			case at := <-ended:
				took := at.Sub(signalled)
				t.Logf("%s tunnel closed %v after the feed post began", proto, took)
				if took > time.Second {
					t.Errorf("closed %v after the signal, want within 1 s", took)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the tunnel stayed open after the device turned non-compliant")
			}
			wantProto := map[string]string{"HTTP/1.1": "HTTP/1.1", "HTTP/2": "HTTP/2.0", "HTTP/3": "HTTP/3.0"}[proto]
			rec := `"verdict":"remediate","reason":"device.not_compliant","rule":"reevaluate:policy.device.compliant","method":"CONNECT","host":"` + echo + `","path":"","protocol":"` + wantProto + `"`
			gw.waitLog(rec)
		})
	}
	if v := gw.metric(`portcullis_tunnels_open{protocol="HTTP/2.0",tunnel="corp"}`); v != "0" {
		t.Errorf("open tunnels after all closed = %q, want 0", v)
	}
	if v := gw.metric(`portcullis_tunnels_ended_total{end="device.not_compliant",tunnel="corp"}`); v != "3" {
		t.Errorf("tunnels ended by re-evaluation = %q, want 3", v)
	}
}

// dialH1Tunnel opens a tunnel with a raw HTTP/1.1 CONNECT.
func dialH1Tunnel(t *testing.T, addr string, tc *tls.Config, target string) net.Conn {
	t.Helper()
	tc = tc.Clone()
	tc.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT over HTTP/1.1: %v %v", resp, err)
	}
	return &readerConn{Conn: c, r: br}
}

type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// TestTunnelIdleMemory opens 300 idle tunnels (HTTP/2, 100 per
// connection: the stream limit) and reports how much the gateway's Go
// heap and stacks grew per tunnel. The target is under 64 KiB;
// the figure is logged for the report, and only a gross regression
// (over 256 KiB) fails, since a shared machine's garbage collector makes
// the measure noisy.
func TestTunnelIdleMemory(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(strings.Replace(tunnelsConfig, "allow: {loopback: true}", "allow: {loopback: true}\n    max_per_user: 1000", 1))
	gw := e.start()
	e.setCompliant(e.dev1ID, true)
	echo := echoServer(t)
	tc := &tls.Config{RootCAs: poolFrom(t, e.serverCA), ServerName: "localhost",
		Certificates: []tls.Certificate{clientCert(t, e.dev1Cert, e.dev1Key)}}
	mem := func() float64 {
		var sum float64
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes"} {
			var v float64
			fmt.Sscan(gw.metric(m), &v)
			sum += v
		}
		return sum
	}
	const conns, perConn = 3, 100
	var clients []*tunnel.Client
	for range conns {
		cl := &tunnel.Client{Proxy: fmt.Sprintf("localhost:%d", e.port), TLS: tc}
		defer cl.Close()
		// One tunnel first, so the connection itself is not counted.
		c, err := cl.Dial(context.Background(), echo)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		clients = append(clients, cl)
	}
	gw.waitLog(`"event":"tunnel_end"`)
	before := mem()
	var open []net.Conn
	for _, cl := range clients {
		for range perConn - 1 {
			c, err := cl.Dial(context.Background(), echo)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
	}
	// Let each tunnel settle: one byte each way.
	for _, c := range open {
		io.WriteString(c, "x")
		io.ReadFull(c, make([]byte, 1))
	}
	after := mem()
	per := (after - before) / float64(len(open))
	t.Logf("gateway heap+stack per idle HTTP/2 tunnel: %.1f KiB (%d tunnels)", per/1024, len(open))
	if per > 256<<10 {
		t.Errorf("%.1f KiB per idle tunnel", per/1024)
	}
	for _, c := range open {
		c.Close()
	}
}

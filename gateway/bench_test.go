package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/session"
	"portcullis/posture"
)

// discardWriter is the cheapest ResponseWriter: the benchmarks measure the
// gateway, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }

// benchGateway starts a Gateway (not its listeners) in front of upstream,
// with a device CA, a compliant device, and a policy that checks the
// device certificate, posture and user risk on every request. It returns
// the gateway and a TLS connection state presenting the device's
// certificate.
func benchGateway(b *testing.B, upstream string) (*Gateway, *tls.ConnectionState) {
	g, cs, _ := benchGatewayWith(b, upstream, "", "login: none\n      user: {max_risk: medium, unknown_risk: allow}")
	return g, cs
}

// benchGatewayWith is benchGateway with extra top-level configuration and
// a policy login; it also returns the fixture's directory.
func benchGatewayWith(b testing.TB, upstream, extra, login string) (*Gateway, *tls.ConnectionState, string) {
	fx := newFixture(b, upstream, "[localhost]", "\n      "+login+"\n      device: {certificate: required, managed: true, compliant: true, max_threat: low}", extra)
	_, err := fx.g.store.ApplyPosture(context.Background(), []posture.PostureEvent{{
		Key: posture.DeviceKey{CA: "corp", ID: testDeviceID},
		Posture: posture.Posture{Source: "uem", EventID: "e1", Managed: true, Compliance: posture.Compliant,
			Threat: posture.ThreatNone, State: posture.StateActive, ObservedAt: time.Now()},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return fx.g, fx.device, fx.dir
}

// benchUpstream is a loopback HTTP/1.1 upstream that answers every
// request with the same 64-byte body. It does not parse headers into a
// map, as net/http's server would: a real upstream runs in another
// process, and the benchmarks count the proxy's allocations and CPU, not
// the upstream's (which grow with every header the gateway adds).
func benchUpstream(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	const resp = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 64\r\n\r\n" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveBenchConn(c, resp)
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// serveBenchConn answers each request head (bodiless GETs) on c with resp.
func serveBenchConn(c net.Conn, resp string) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
			n = copy(buf, buf[end+4:n])
		}
		if n == len(buf) {
			return // a head larger than the buffer: not a benchmark request
		}
	}
}

// benchConnContext is the context the TCP listeners give a connection:
// the listener, the identity cache and the limits state.
func benchConnContext() context.Context {
	return connContext(withListener(context.Background(), 0), nil)
}

// benchRequest builds a request as the server would hand it over, without
// httptest.NewRequest's parsing (which costs more than the gateway), and
// with a cancelable context of its own, as net/http gives every request.
func benchRequest(ctx context.Context, u *url.URL, cs *tls.ConnectionState) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	r := &http.Request{Method: "GET", URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Host: "localhost",
		Header: http.Header{"Authorization": {"Bearer x"}, "Accept": {"*/*"}}, RemoteAddr: "127.0.0.1:50000", TLS: cs}
	return r.WithContext(ctx), cancel
}

// BenchmarkServeHTTP is the whole pipeline for one allowed request:
// identity (cached per connection), routing, posture and risk lookup,
// Decide, identity headers and assertion (cached), the live registry, the
// proxy round trip to a loopback upstream, metrics and the decision record.
// Compare with BenchmarkBareProxy, run in the same invocation.
func BenchmarkServeHTTP(b *testing.B) {
	up := benchUpstream(b)
	g, cs := benchGateway(b, up)
	ctx := benchConnContext()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	u, _ := url.Parse("https://localhost/64")
	for b.Loop() {
		clear(w.h)
		r, cancel := benchRequest(ctx, u, cs)
		g.ServeHTTP(w, r)
		cancel()
	}
}

// BenchmarkBareProxy is the floor: httputil.ReverseProxy with the same
// transport settings and nothing else, as the shared harness's goproxy.
func BenchmarkBareProxy(b *testing.B) {
	up := benchUpstream(b)
	u, _ := url.Parse(up)
	rc := &ResourceConfig{}
	rc.Timeouts.Dial, rc.Timeouts.ResponseHeader = 5e9, 60e9
	_, tr, err := newProxy(rc, up, &Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
		Transport:  tr,
		BufferPool: bufPool,
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	ru, _ := url.Parse("https://localhost/64")
	for b.Loop() {
		clear(w.h)
		r, cancel := benchRequest(context.Background(), ru, nil)
		rp.ServeHTTP(w, r)
		cancel()
	}
}

// BenchmarkDenyPath is the gateway's own work without the upstream:
// a request to a resource the policy denies exercises routing, identity,
// posture, Decide, the problem document and the decision record.
func BenchmarkDenyPath(b *testing.B) {
	up := benchUpstream(b)
	g, _ := benchGateway(b, up)
	ctx := benchConnContext()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	u, _ := url.Parse("https://localhost/64")
	for b.Loop() {
		clear(w.h)
		r, cancel := benchRequest(ctx, u, nil)
		g.ServeHTTP(w, r)
		cancel()
	}
}

// BenchmarkServeHTTPSession is BenchmarkServeHTTP for a resource behind an
// OIDC login: every request carries a sealed session cookie, which is
// opened, checked for expiry and revocation, and stripped, and the user's
// group is checked, besides the device certificate and posture.
func BenchmarkServeHTTPSession(b *testing.B) {
	up := benchUpstream(b)
	g, cs, dir := benchGatewayWith(b, up, `identity:
  oidc:
    - name: corp
      issuer: http://127.0.0.1:1
      client_id: portcullis
      client_secret_file: client.secret
      redirect_url: https://localhost/.portcullis/oidc/callback
`, "login: corp\n      user: {groups: [eng], max_risk: medium, unknown_risk: allow}")
	keys, err := session.LoadKeyFile(filepath.Join(dir, "data", "session.keys"), false)
	if err != nil {
		b.Fatal(err)
	}
	var cfg session.Config
	cfg.ApplyDefaults()
	codec, err := session.NewCodec(session.CookiePrefix+"-corp", keys, cfg, g.store)
	if err != nil {
		b.Fatal(err)
	}
	sess := codec.New("sess-1", time.Now(), time.Time{})
	sess.Subject = enforcement.Subject{UserID: "bench@example.test", Email: "bench@example.test", Groups: []string{"eng", "staff"},
		IdP: "corp", AuthTime: time.Now(), SessionID: "sess-1"}
	val, err := codec.Seal(sess)
	if err != nil {
		b.Fatal(err)
	}
	cookie := codec.Cookie(val, sess).Name + "=" + val
	ctx := benchConnContext()
	w := &discardWriter{h: http.Header{}}
	u, _ := url.Parse("https://localhost/64")
	r0, cancel := benchRequest(ctx, u, cs)
	r0.Header.Set("Cookie", cookie)
	clear(w.h)
	g.ServeHTTP(w, r0)
	cancel()
	if w.status != http.StatusOK {
		b.Fatalf("session request answered %d, want 200: %v", w.status, w.h)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, cancel := benchRequest(ctx, u, cs)
		r.Header["Cookie"] = []string{cookie}
		clear(w.h)
		g.ServeHTTP(w, r)
		cancel()
	}
}

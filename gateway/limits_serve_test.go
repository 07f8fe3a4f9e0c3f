package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"portcullis/certs/devca"
)

// limitsEnv is a running gateway (listeners included) in front of an
// upstream that counts what reaches it.
type limitsEnv struct {
	g        *Gateway
	addr     string // TCP listener
	h3addr   string // UDP listener
	roots    *x509.CertPool
	audit    string // decision log file
	up       *countingUpstream
	stopOnce sync.Once
	stop     func()
}

// countingUpstream counts requests and how many are in it at once. A
// request's body is read to the end before it is answered; /hold answers
// only when release is closed (or the request is cancelled).
type countingUpstream struct {
	total   atomic.Int64
	cur     atomic.Int64
	peak    atomic.Int64
	release chan struct{}
}

func (u *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.total.Add(1)
	n := u.cur.Add(1)
	defer u.cur.Add(-1)
	for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
	}
	if r.URL.Path == "/sse" {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-u.release:
				return
			case <-time.After(10 * time.Millisecond): // the stream's pace
			}
		}
	}
	// The body first: net/http notices a client gone only once the
	// body has been read.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		http.Error(w, "truncated body", http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/hold" {
		select {
		case <-u.release:
		case <-r.Context().Done():
		}
	}
	w.Write([]byte("ok"))
}

// startLimitsEnv runs a gateway with the given limits section (YAML,
// indented under "limits:") in front of a counting upstream.
func startLimitsEnv(t *testing.T, limits string) *limitsEnv {
	t.Helper()
	dir := t.TempDir()
	srv, err := devca.InitFiles(dir, "server-ca", "Limits Test Server CA")
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, _, err := srv.IssueServer([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devca.InitFiles(dir, "device-ca", "Limits Test Device CA"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "s.pem"), sc, 0o600)
	os.WriteFile(filepath.Join(dir, "s.key"), sk, 0o600)
	os.WriteFile(filepath.Join(dir, "feed.secret"), []byte("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXM=\n"), 0o600)
	up := &countingUpstream{release: make(chan struct{})}
	us := httptest.NewServer(up)
	t.Cleanup(func() { us.CloseClientConnections(); us.Close() })
	cfg := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", client_auth: "off"}]
admin: {listen: "off"}
tls: {certificates: [{cert: s.pem, key: s.key}]}
audit: {output: decisions.log}
shutdown_timeout: 1s
devices:
  cas:
    - name: corp
      bundle: device-ca.pem
      device_id: {from: uri_san, pattern: '^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$'}
posture:
  feeds:
    - {name: uem, type: webhook, secret_file: feed.secret}
resources:
  - name: app
    hosts: ["*"]
    upstream: %s
    policy: {device: {certificate: "off"}}
limits:
%s
`, us.URL, limits)
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	g, stopGateway := runGateway(t, path)
	roots := x509.NewCertPool()
	pem, _ := os.ReadFile(srv.CertFile())
	roots.AppendCertsFromPEM(pem)
	e := &limitsEnv{g: g, addr: g.Addr("https0"), h3addr: g.Addr("h3_0"), roots: roots, audit: filepath.Join(dir, "decisions.log"), up: up}
	e.stop = func() {
		e.stopOnce.Do(func() {
			select {
			case <-up.release:
			default:
				close(up.release)
			}
			stopGateway()
		})
	}
	t.Cleanup(e.stop)
	return e
}

// records stops the gateway, which flushes the decision log, and returns
// its records.
func (e *limitsEnv) records(t *testing.T) []string {
	t.Helper()
	e.stop()
	b, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (e *limitsEnv) tlsConfig(proto string) *tls.Config {
	return &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{proto}}
}

// closeUpstreamIdle drops the gateway's idle upstream connections, whose
// goroutines would otherwise outlive the test's requests.
func (e *limitsEnv) closeUpstreamIdle() {
	for _, r := range e.g.cur.Load().resources {
		r.transport.(*http.Transport).CloseIdleConnections()
	}
}

// baseGoroutines is the process's goroutine count once the gateway has
// settled: the same over five polls in a row (it starts some listeners'
// goroutines after reporting ready).
func baseGoroutines(t *testing.T) int {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, same := -1, 0
	for range 500 {
		n := runtime.NumGoroutine()
		if n == last {
			if same++; same == 5 {
				return n
			}
		} else {
			last, same = n, 0
		}
		<-tick.C
	}
	t.Fatal("the goroutine count never settled")
	return 0
}

// waitGoroutines waits until the process is back to at most base
// goroutines (plus slack for runtime helpers).
func waitGoroutines(t *testing.T, e *limitsEnv, base int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		e.closeUpstreamIdle()
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", n, base+2, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// h2Client is a raw HTTP/2 client connection: frames as written, no
// client-side normalisation or limits.
type h2Client struct {
	t      *testing.T
	c      *tls.Conn
	fr     *http2.Framer
	mu     sync.Mutex // guards writes
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	frames chan frameInfo // everything the server sends; closed at EOF
}

func dialH2(t *testing.T, e *limitsEnv) *h2Client {
	t.Helper()
	c, err := tls.Dial("tcp", e.addr, e.tlsConfig("h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("negotiated %q, want h2", c.ConnectionState().NegotiatedProtocol)
	}
	h := &h2Client{t: t, c: c, frames: make(chan frameInfo, 1024)}
	h.fr = http2.NewFramer(c, bufio.NewReader(c))
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.frames)
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				h.mu.Lock()
				h.fr.WriteSettingsAck()
				h.mu.Unlock()
			}
			h.frames <- infoOf(f) // f is only valid until the next ReadFrame
		}
	}()
	return h
}

// headers writes a request's HEADERS frame on stream id.
func (h *h2Client) headers(id uint32, method, path string, endStream bool, extra ...string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hbuf.Reset()
	for _, kv := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: endStream, EndHeaders: true})
}

func (h *h2Client) write(f func(*http2.Framer) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(h.fr)
}

// frameInfo is what the tests need of a frame the server sent.
type frameInfo struct {
	http2.FrameHeader
	status string        // a response HEADERS frame's :status
	code   http2.ErrCode // of RST_STREAM and GOAWAY
}

func infoOf(f http2.Frame) frameInfo {
	fi := frameInfo{FrameHeader: f.Header()}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		fi.status = f.PseudoValue("status")
	case *http2.RSTStreamFrame:
		fi.code = f.ErrCode
	case *http2.GoAwayFrame:
		fi.code = f.ErrCode
	}
	return fi
}

// ends reports whether the frame ends its stream.
func (f frameInfo) ends() bool {
	return f.Type == http2.FrameRSTStream ||
		(f.Type == http2.FrameHeaders || f.Type == http2.FrameData) && f.Flags.Has(http2.FlagDataEndStream)
}

// TestRapidResetGoAway opens streams and resets them at once (CVE-2023-44487):
// past limits.streams.max_resets the connection gets GOAWAY
// ENHANCE_YOUR_CALM and is closed, and every stream made at most one
// decision record and at most one upstream request.
func TestRapidResetGoAway(t *testing.T) {
	const maxResets = 50
	e := startLimitsEnv(t, fmt.Sprintf("  streams: {max_resets: %d, reset_window: 1h}", maxResets))
	h := dialH2(t, e)
	goaway := make(chan frameInfo, 1)
	go func() {
		for f := range h.frames {
			if f.Type == http2.FrameGoAway {
				select {
				case goaway <- f:
				default:
				}
			}
		}
	}()
	const bound = 20000 // the probe's figure; the gateway must stop it long before
	var got *frameInfo
	sent := 0
send:
	for i := range bound {
		select {
		case ga := <-goaway:
			got = &ga
			break send
		default:
		}
		id := uint32(2*i + 1)
		if h.headers(id, "GET", "/", true) != nil {
			break
		}
		if h.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeCancel) }) != nil {
			break
		}
		sent++
	}
	if got == nil {
		select {
		case ga := <-goaway:
			got = &ga
		case <-time.After(10 * time.Second):
			t.Fatalf("no GOAWAY after %d reset streams", sent)
		}
	}
	if got.code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY code = %v, want ENHANCE_YOUR_CALM", got.code)
	}
	recs := e.records(t)
	if len(recs) > maxResets+1 {
		t.Errorf("%d decision records for a connection cut off after %d resets", len(recs), maxResets+1)
	}
	if n := e.up.total.Load(); n > maxResets+1 {
		t.Errorf("%d upstream requests for a connection cut off after %d resets", n, maxResets+1)
	}
	if got := rejections(e.g, ReasonRapidReset); got < 1 {
		t.Errorf("rapid-reset rejections = %v, want at least 1", got)
	}
}

// TestStreamsHeldOpen holds 200 POST streams open on one HTTP/2
// connection: no more than the per-connection cap reach the upstream at
// once, the others are refused (429, or by the stream limit), and once the
// client goes, the gateway's goroutines return to where they were.
func TestStreamsHeldOpen(t *testing.T) {
	tests := []struct {
		name     string
		limits   string
		wantPeak int64
		want429  bool
	}{
		{"defaults", "  body: {idle_timeout: 1h, min_rate_grace: 1h}", DefaultMaxStreams, false},
		{"per connection", "  body: {idle_timeout: 1h, min_rate_grace: 1h}\n  upstream: {per_connection: 10}", 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startLimitsEnv(t, tt.limits)
			base := baseGoroutines(t)
			h := dialH2(t, e)
			const streams = 200
			for i := range streams {
				if err := h.headers(uint32(2*i+1), "POST", "/hold", false, "content-length", "10"); err != nil {
					t.Fatal(err)
				}
			}
			// Every stream beyond those held ends with a 429 or a reset.
			ended := map[uint32]bool{}
			n429 := 0
			waitFor(t, "refused streams to end", func() bool {
				for {
					select {
					case f, ok := <-h.frames:
						if !ok {
							t.Fatal("connection closed")
						}
						switch f.Type {
						case http2.FrameHeaders:
							if f.status != "429" {
								t.Fatalf("stream %d: status %s, want 429", f.StreamID, f.status)
							}
							n429++
							ended[f.StreamID] = true
						case http2.FrameRSTStream:
							ended[f.StreamID] = true
						}
						continue
					default:
					}
					break
				}
				return int64(len(ended)) >= streams-tt.wantPeak && e.up.cur.Load() == tt.wantPeak
			})
			if peak := e.up.peak.Load(); peak > tt.wantPeak {
				t.Errorf("upstream peak = %d concurrent requests from one connection, want at most %d", peak, tt.wantPeak)
			}
			if tt.want429 && n429 == 0 {
				t.Error("no stream was answered 429")
			}
			h.c.Close()
			waitFor(t, "held upstream requests to end", func() bool { return e.up.cur.Load() == 0 })
			waitGoroutines(t, e, base)
		})
	}
}

// TestBodyTimeout sends bodies too slowly: nothing after the first bytes
// (idle), or a byte at a time (rate), to a resource and to a feed, over
// HTTP/1.1 and HTTP/2. Each gets 408, the HTTP/1.1 connection is closed,
// and the resource request leaves one record saying so.
func TestBodyTimeout(t *testing.T) {
	tests := []struct {
		name    string
		proto   string
		path    string
		trickle bool
		rule    string // "" for a feed: no decision record
	}{
		{"h1 idle", "http/1.1", "/upload", false, "limits.body.idle_timeout"},
		{"h1 rate", "http/1.1", "/upload", true, "limits.body.min_rate"},
		{"h1 feed", "http/1.1", "/.portcullis/feeds/uem", false, ""},
		{"h2 idle", "h2", "/upload", false, "limits.body.idle_timeout"},
		{"h2 rate", "h2", "/upload", true, "limits.body.min_rate"},
		{"h2 feed", "h2", "/.portcullis/feeds/uem", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startLimitsEnv(t, "  body: {idle_timeout: 1s, min_rate: 1000, min_rate_grace: 1s, system_timeout: 1s}")
			base := baseGoroutines(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var stopOnce sync.Once
			stopTrickle := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
			defer stopTrickle()
			// trickle calls send with one byte every 20 ms, at most 2,000
			// times, until stop.
			trickle := func(send func() error) {
				wg.Go(func() {
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					for range 2000 {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if send() != nil {
							return
						}
					}
				})
			}
			if tt.proto == "http/1.1" {
				c, err := tls.Dial("tcp", e.addr, e.tlsConfig("http/1.1"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", tt.path)
				if tt.trickle {
					trickle(func() error { _, err := c.Write([]byte(" ")); return err })
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound, not an expectation
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("reading the response: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Fatalf("status = %d, want 408", resp.StatusCode)
				}
				if !resp.Close {
					t.Error("the 408 does not close the connection")
				}
				if _, err := br.ReadByte(); err != io.EOF {
					t.Errorf("after the 408, read = %v, want EOF", err)
				}
			} else {
				h := dialH2(t, e)
				if err := h.headers(1, "POST", tt.path, false, "content-length", "100000", "content-type", "application/json"); err != nil {
					t.Fatal(err)
				}
				h.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, []byte("{")) })
				if tt.trickle {
					trickle(func() error {
						return h.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, []byte(" ")) })
					})
				}
				var st string
				ended := false
				timeout := time.After(20 * time.Second) // a bound, not an expectation
				for !ended {
					select {
					case f, ok := <-h.frames:
						if !ok {
							t.Fatal("connection closed")
						}
						if f.StreamID != 1 {
							continue
						}
						if f.status != "" {
							st = f.status
						}
						ended = f.ends()
					case <-timeout:
						t.Fatal("no response")
					}
				}
				if st != "408" {
					t.Fatalf("status = %q, want 408", st)
				}
			}
			stopTrickle()
			if tt.rule == "" {
				return
			}
			recs := e.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(recs), strings.Join(recs, "\n"))
			}
			for _, want := range []string{`"reason":"client.body_timeout"`, `"rule":"` + tt.rule + `"`, `"status":408`} {
				if !strings.Contains(recs[0], want) {
					t.Errorf("record lacks %s: %s", want, recs[0])
				}
			}
			waitGoroutines(t, e, base)
		})
	}
}

// TestIPLimit fills a client address's share of upstream requests: the
// next one is refused with 429, Retry-After and the reason, and recorded.
func TestIPLimit(t *testing.T) {
	e := startLimitsEnv(t, "  upstream: {per_ip: 2}")
	tr := &http.Transport{TLSClientConfig: e.tlsConfig("http/1.1")}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := c.Get("https://" + e.addr + "/hold")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	waitFor(t, "two held requests", func() bool { return e.up.cur.Load() == 2 })
	req, _ := http.NewRequest("GET", "https://"+e.addr+"/third", nil)
	req.Header.Set("Accept", "application/problem+json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte(`"reason":"client.ip_limit"`)) {
		t.Errorf("third request: %d Retry-After=%q %s; want 429 with Retry-After and client.ip_limit", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	close(e.up.release)
	wg.Wait()
	if n := e.g.limiter.ipCount("127.0.0.1"); n != 0 {
		t.Errorf("after every request ended, the address holds %d", n)
	}
	recs := e.records(t)
	n := 0
	for _, r := range recs {
		if strings.Contains(r, `"reason":"client.ip_limit"`) && strings.Contains(r, `"status":429`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d records of the refusal, want 1:\n%s", n, strings.Join(recs, "\n"))
	}
}

// TestCanceledBeforeProxy: a request whose client went away while it was
// decided never reaches the upstream, and leaves one record.
func TestCanceledBeforeProxy(t *testing.T) {
	e := startLimitsEnv(t, "  upstream: {per_ip: 2}")
	ctx, cancel := context.WithCancel(withConnLimits(withConnInfo(context.Background()), nil))
	cancel()
	r := httptest.NewRequest("POST", "https://localhost/x", strings.NewReader("body")).WithContext(ctx)
	w := httptest.NewRecorder()
	e.g.ServeHTTP(w, r)
	if n := e.up.total.Load(); n != 0 {
		t.Errorf("%d upstream requests for a cancelled request", n)
	}
	if cl := connLimitsFrom(ctx); cl.upstream.Load() != 0 || e.g.limiter.ipCount("192.0.2.1") != 0 {
		t.Error("a cancelled request still holds a slot")
	}
	recs := e.records(t)
	if len(recs) != 1 || !strings.Contains(recs[0], `"reason":"client.canceled"`) || !strings.Contains(recs[0], `"status":499`) {
		t.Errorf("records = %q, want one with client.canceled and 499", recs)
	}
}

// rejections is the value of portcullis_limit_rejections_total{reason}.
func rejections(g *Gateway, reason string) float64 {
	var m dto.Metric
	g.limiter.rejections.WithLabelValues(reason).Write(&m)
	return m.GetCounter().GetValue()
}

func (e *limitsEnv) h3Client(t *testing.T) *http.Client {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{http3.NextProtoH3}}}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestBodyTimeoutH3 is TestBodyTimeout over HTTP/3: a body that stops
// after its first byte gets 408, and one record says why.
func TestBodyTimeoutH3(t *testing.T) {
	for _, path := range []string{"/upload", "/.portcullis/feeds/uem"} {
		t.Run(path, func(t *testing.T) {
			e := startLimitsEnv(t, "  body: {idle_timeout: 1s, min_rate_grace: 1s, system_timeout: 1s}")
			pr, pw := io.Pipe()
			defer pw.Close()
			go pw.Write([]byte("{"))
			req, _ := http.NewRequest("POST", "https://"+e.h3addr+path, pr)
			req.ContentLength = 100000
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.h3Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status = %d, want 408", resp.StatusCode)
			}
			if path != "/upload" {
				return
			}
			recs := e.records(t)
			if len(recs) != 1 || !strings.Contains(recs[0], `"reason":"client.body_timeout"`) || !strings.Contains(recs[0], `"status":408`) {
				t.Errorf("records = %q, want one with client.body_timeout and 408", recs)
			}
		})
	}
}

// TestRapidResetH3 cancels HTTP/3 requests while they are being
// proxied: past limits.streams.max_resets the gateway closes the QUIC
// connection with H3_EXCESSIVE_LOAD, which a request still open on it
// sees.
func TestRapidResetH3(t *testing.T) {
	const maxResets = 5
	e := startLimitsEnv(t, fmt.Sprintf("  streams: {max_resets: %d, reset_window: 1h}", maxResets))
	c := e.h3Client(t)
	held := make(chan error, 1)
	go func() {
		resp, err := c.Get("https://" + e.h3addr + "/hold")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		held <- err
	}()
	waitFor(t, "the held request", func() bool { return e.up.cur.Load() == 1 })
	for i := range 4 * maxResets { // bounded: the connection must close long before
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+e.h3addr+"/hold", pr)
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}()
		waitFor(t, "the request to reach the upstream", func() bool { return e.up.total.Load() == int64(i+2) })
		cancel()
		<-done
		pw.Close()
		if i+1 <= maxResets {
			select {
			case err := <-held:
				t.Fatalf("connection closed after %d resets, before the limit of %d: %v", i+1, maxResets, err)
			default:
			}
			continue
		}
		select {
		case err := <-held:
			var ae *quic.ApplicationError
			if !errors.As(err, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad) {
				t.Fatalf("the held request ended with %v, want H3_EXCESSIVE_LOAD", err)
			}
			return
		case <-time.After(20 * time.Second): // a bound, not an expectation
			t.Fatalf("connection still open after %d resets", i+1)
		}
	}
	t.Fatal("connection never closed")
}

// TestStreamReleasesItsSlot opens an event stream, which holds its
// upstream slot while it lives, and ends it from the client: the proxy's
// copy fails and it panics with http.ErrAbortHandler, and the slot is
// still given back, over HTTP/1.1 and HTTP/2.
func TestStreamReleasesItsSlot(t *testing.T) {
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			e := startLimitsEnv(t, "  upstream: {per_ip: 1}")
			tr := &http.Transport{TLSClientConfig: e.tlsConfig(proto), ForceAttemptHTTP2: proto == "h2"}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for i := range 3 { // each stream must free the only slot for the next
				resp, err := c.Get("https://" + e.addr + "/sse")
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 {
					t.Fatalf("stream %d: status %d, want 200", i, resp.StatusCode)
				}
				if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				if n := e.g.limiter.ipCount("127.0.0.1"); n != 1 {
					t.Errorf("an open stream holds %d slots, want 1", n)
				}
				resp.Body.Close()
				if proto == "http/1.1" {
					tr.CloseIdleConnections()
				}
				waitFor(t, "the slot to be released", func() bool { return e.g.limiter.ipCount("127.0.0.1") == 0 })
			}
		})
	}
}

package test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// withLimits appends a limits section (lines indented by two spaces) to
// the env's configuration.
func (e *env) withLimits(limits string) {
	e.t.Helper()
	f, err := os.OpenFile(e.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "limits:\n%s\n", limits); err != nil {
		e.t.Fatal(err)
	}
}

// rawH2 is an HTTP/2 connection driven frame by frame, so the tests send
// exactly what a hostile client would.
type rawH2 struct {
	c      *tls.Conn
	fr     *http2.Framer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	frames chan frameInfo // what the server sends; closed when it hangs up
}

func (e *env) dialRawH2() *rawH2 {
	e.t.Helper()
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), &tls.Config{
		RootCAs: poolFrom(e.t, e.serverCA), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	h := &rawH2{c: c, frames: make(chan frameInfo, 4096)}
	h.fr = http2.NewFramer(c, bufio.NewReader(c))
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	io.WriteString(c, http2.ClientPreface)
	h.fr.WriteSettings()
	go func() {
		defer close(h.frames)
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			select {
			case h.frames <- infoOf(f): // f is only valid until the next ReadFrame
			default: // a test that stops reading must not stall the connection
			}
		}
	}()
	return h
}

// frameInfo is what the tests need of a frame the server sent.
type frameInfo struct {
	http2.FrameHeader
	status string        // a response HEADERS frame's :status
	code   http2.ErrCode // of GOAWAY
}

func infoOf(f http2.Frame) frameInfo {
	fi := frameInfo{FrameHeader: f.Header()}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		fi.status = f.PseudoValue("status")
	case *http2.GoAwayFrame:
		fi.code = f.ErrCode
	}
	return fi
}

// request writes one request's HEADERS frame. Only the test goroutine
// writes.
func (h *rawH2) request(id uint32, method, path string, endStream bool, extra ...string) error {
	h.hbuf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: endStream, EndHeaders: true})
}

// records counts the gateway's decision records so far.
func (g *gatewayProc) records() int {
	return strings.Count(g.logs(), `"msg":"decision"`)
}

// goroutines is the gateway's go_goroutines gauge.
func (g *gatewayProc) goroutines() int {
	g.t.Helper()
	n, err := strconv.Atoi(g.metric("go_goroutines"))
	if err != nil {
		g.t.Fatalf("go_goroutines: %v", err)
	}
	return n
}

// settle polls f until it returns the same value five times in a row
// (bounded), and returns that value.
func settle(t *testing.T, f func() int) int {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, same := -1, 0
	for range 400 {
		n := f()
		if n == last {
			if same++; same == 5 {
				return n
			}
		} else {
			last, same = n, 0
		}
		<-tick.C
	}
	t.Fatal("never settled")
	return 0
}

// TestLimitsRapidReset sends HEADERS+RST_STREAM pairs on one connection
// (CVE-2023-44487), as the probe did 20,000 times: the gateway answers
// GOAWAY ENHANCE_YOUR_CALM once the client has reset more streams than
// limits.streams.max_resets, and writes at most one record per stream.
func TestLimitsRapidReset(t *testing.T) {
	const maxResets = 100
	e := newEnv(t)
	e.withLimits(fmt.Sprintf("  streams: {max_resets: %d, reset_window: 1m}", maxResets))
	g := e.start()
	before := g.records()
	h := e.dialRawH2()
	sent := 0
	for i := range 20000 {
		id := uint32(2*i + 1)
		if h.request(id, "GET", "/public/x", true) != nil || h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the gateway hung up
		}
		sent++
	}
	var ga *frameInfo
	timeout := time.After(20 * time.Second) // a bound, not an expectation
	for ga == nil {
		select {
		case f, ok := <-h.frames:
			if !ok {
				t.Fatalf("connection closed without GOAWAY after %d reset streams", sent)
			}
			if f.Type == http2.FrameGoAway {
				ga = &f
			}
		case <-timeout:
			t.Fatalf("no GOAWAY after %d reset streams", sent)
		}
	}
	if ga.code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.code)
	}
	g.waitLog("ending a connection that reset too many streams")
	if got := g.metric(`portcullis_limit_rejections_total{reason="client.rapid_reset"}`); got != "1" {
		t.Errorf("rapid-reset rejections = %q, want 1", got)
	}
	n := settle(t, g.records) - before
	if n > maxResets+1 {
		t.Errorf("%d decision records for %d streams the gateway read", n, maxResets+1)
	}
	t.Logf("wrote %d streams (the socket buffers took them); %d records", sent, n)
}

// TestLimitsHeldStreams holds 200 POST streams open on one connection,
// as the probe did: past limits.upstream.per_connection they are
// answered 429 with Retry-After, past the stream limit refused; when
// the client leaves, the gateway's goroutines return to their baseline.
func TestLimitsHeldStreams(t *testing.T) {
	e := newEnv(t)
	e.withLimits("  upstream: {per_connection: 10}\n  body: {idle_timeout: 1h, min_rate_grace: 1h}")
	g := e.start()
	base := settle(t, g.goroutines)
	h := e.dialRawH2()
	for i := range 200 {
		if err := h.request(uint32(2*i+1), "POST", "/public/held", false, "content-length", "10"); err != nil {
			t.Fatal(err)
		}
	}
	ended := map[uint32]bool{}
	n429 := 0
	timeout := time.After(20 * time.Second) // a bound, not an expectation
	for len(ended) < 190 {
		select {
		case f, ok := <-h.frames:
			if !ok {
				t.Fatal("connection closed")
			}
			switch f.Type {
			case http2.FrameHeaders:
				if f.status != "429" {
					t.Fatalf("stream %d answered %s while 10 were held", f.StreamID, f.status)
				}
				n429++
				ended[f.StreamID] = true
			case http2.FrameRSTStream:
				ended[f.StreamID] = true
			}
		case <-timeout:
			t.Fatalf("only %d of 190 streams ended", len(ended))
		}
	}
	if n429 == 0 {
		t.Error("no stream was answered 429")
	}
	held := settle(t, g.goroutines)
	h.c.Close()
	after := settle(t, g.goroutines)
	t.Logf("goroutines: %d before, %d with 200 streams open, %d after", base, held, after)
	if after > base+2 {
		t.Errorf("%d goroutines after the client left, %d before", after, base)
	}
}

// TestLimitsSlowBody uploads with curl --limit-rate, far below
// limits.body.min_rate, to a resource and to a feed, over HTTP/1.1 and
// HTTP/2: each gets 408 and the resource request one record saying why.
func TestLimitsSlowBody(t *testing.T) {
	curl := requirePeer(t, "curl")
	e := newEnv(t)
	e.withLimits("  body: {min_rate: 1000, min_rate_grace: 1s, system_timeout: 1s}")
	g := e.start()
	body := filepath.Join(t.TempDir(), "body.json")
	os.WriteFile(body, append([]byte(`{"pad":"`), append(bytes.Repeat([]byte("x"), 20000), `"}`...)...), 0o600)
	for _, proto := range []string{"--http1.1", "--http2"} {
		for _, path := range []string{"/public/upload", "/.portcullis/feeds/uem"} {
			t.Run(proto+path, func(t *testing.T) {
				before := strings.Count(g.logs(), `"reason":"client.body_timeout"`)
				out, _ := run(t, curl, "-sS", proto, "--cacert", e.serverCA, "--limit-rate", "100",
					"-H", "Content-Type: application/json", "--data-binary", "@"+body,
					"-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", e.url(path))
				if out != "408" {
					t.Fatalf("status = %q, want 408", out)
				}
				if path == "/public/upload" {
					waitFor(t, func() bool { return strings.Count(g.logs(), `"reason":"client.body_timeout"`) == before+1 })
				}
			})
		}
	}
}

// waitFor polls cond until it holds, for at most 15 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range 750 {
		if cond() {
			return
		}
		<-tick.C
	}
	t.Fatal("condition never held")
}

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"portcullis/enforcement"
)

// streamUpstream serves server-sent events that end in the ways a stream
// can end on the upstream's side.
func streamUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		switch r.URL.Path {
		case "/end": // the upstream finishes the stream
		case "/abort": // the upstream's connection breaks mid-stream
			panic(http.ErrAbortHandler)
		default: // the stream lives until someone else ends it
			<-r.Context().Done()
		}
	}))
	t.Cleanup(up.Close)
	return up
}

// countLines counts the decision records written so far.
func countLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// waitFor polls cond for up to 10 s: the end of a stream is observed by
// the gateway's handler goroutine, after the client has moved on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLiveStreamsLeaveTheRegistry opens 1,000 event streams through the
// gateway over HTTP/1.1 and HTTP/2 and ends them in every way a stream
// ends: the client leaves, its deadline passes, the upstream finishes or
// breaks, re-evaluation closes it, a reload removes its resource. However
// each ended, it must leave the live registry and write one decision
// record, and no goroutine may stay behind.
func TestLiveStreamsLeaveTheRegistry(t *testing.T) {
	up := streamUpstream(t)
	fx := newFixture(t, up.URL, "[app.test, 127.0.0.1]", "{login: none, device: {certificate: off}}", "")
	g, records := fx.g, fx.records
	front := httptest.NewUnstartedServer(g)
	front.EnableHTTP2 = true
	front.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return withConnInfo(ctx) }
	front.StartTLS()
	defer front.Close()

	clients := map[string]*http.Client{}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64}
		if proto == "HTTP/2" {
			tr.ForceAttemptHTTP2 = true
		} else {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		defer tr.CloseIdleConnections()
		clients[proto] = &http.Client{Transport: tr}
	}
	// Goroutines of the idle client and server connections are part of
	// the baseline: warm both protocols up first.
	for _, c := range clients {
		resp, err := c.Get(front.URL + "/end")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitFor(t, "the warm-up records", func() bool { return countLines(t, records) == 2 })
	baseline := runtime.NumGoroutine()

	// open starts a stream and returns once its first event has arrived,
	// with the rest of the body and a way to leave.
	open := func(c *http.Client, path string, timeout time.Duration) (*bufio.Reader, io.Closer, context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(context.Background())
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), timeout)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			cancel()
			resp.Body.Close()
			return nil, nil, nil, fmt.Errorf("first event: %w", err)
		}
		return br, resp.Body, cancel, nil
	}
	closeAll := func(d enforcement.Decision) {
		g.live.rangeEntries(func(e *liveEntry) { e.close(d) })
	}
	reload := &enforcement.Reevaluator{Registry: g.live, State: g.store,
		Policies: func(string) *enforcement.Policy { return nil }} // the resource is gone

	ways := []struct {
		name string
		path string
		end  func(br *bufio.Reader, body io.Closer, cancel context.CancelFunc)
	}{
		{"client leaves", "/live", func(_ *bufio.Reader, body io.Closer, cancel context.CancelFunc) { cancel(); body.Close() }},
		{"client deadline", "/live", nil}, // opened with a deadline, read to the end
		{"upstream ends", "/end", nil},
		{"upstream breaks", "/abort", nil},
		{"re-evaluation", "/live", nil}, // closed all at once below
		{"reload", "/live", nil},
	}
	const perWay = 1000 / 12 // 6 ways x 2 protocols
	total := 0
	for proto, c := range clients {
		for _, way := range ways {
			t.Run(proto+"/"+way.name, func(t *testing.T) {
				type stream struct {
					br     *bufio.Reader
					body   io.Closer
					cancel context.CancelFunc
				}
				streams := make([]stream, 0, perWay)
				timeout := time.Duration(0)
				if way.name == "client deadline" {
					timeout = time.Second
				}
				for range perWay {
					br, body, cancel, err := open(c, way.path, timeout)
					if err != nil {
						t.Fatal(err)
					}
					streams = append(streams, stream{br, body, cancel})
				}
				switch way.name {
				case "re-evaluation":
					closeAll(enforcement.Decision{Verdict: enforcement.Deny, Reason: enforcement.ReasonNotCompliant})
				case "reload":
					if n := reload.Sweep(nil); n != perWay {
						t.Errorf("reload closed %d live requests, want %d", n, perWay)
					}
				}
				var wg sync.WaitGroup
				for _, s := range streams {
					wg.Go(func() {
						if way.end != nil {
							way.end(s.br, s.body, s.cancel)
							return
						}
						io.Copy(io.Discard, s.br) // until the gateway or the upstream ends it
						s.body.Close()
						s.cancel()
					})
				}
				wg.Wait()
				total += perWay
				waitFor(t, "the live registry to empty", func() bool { return g.live.Len() == 0 })
			})
		}
	}
	waitFor(t, "one record per stream", func() bool { return countLines(t, records) >= 2+total })
	if n := countLines(t, records) - 2; n != total {
		t.Errorf("%d decision records for %d streams", n, total)
	}
	for _, c := range clients {
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
	// Allow for connections the clients still hold; a leak per stream
	// would be hundreds.
	waitFor(t, fmt.Sprintf("goroutines to return to %d (now %d)", baseline, runtime.NumGoroutine()),
		func() bool { return runtime.NumGoroutine() <= baseline+10 })
}

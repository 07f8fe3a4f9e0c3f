package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"

	"portcullis/gateway/console"
)

// BenchmarkServeHTTPDecisionStream is BenchmarkServeHTTP with the admin
// console's decision stream closed (no subscriber to the decision log)
// and open (the console receiving every record, as it does while it
// runs). The ratio of the two is the stream's cost on the request path.
func BenchmarkServeHTTPDecisionStream(b *testing.B) {
	up := benchUpstream(b)
	for _, open := range []bool{false, true} {
		name := "closed"
		if open {
			name = "open"
		}
		b.Run(name, func(b *testing.B) {
			g, cs := benchGateway(b, up)
			if open {
				c, err := console.New(console.Options{Config: console.Config{Enabled: true}, Store: g.store,
					Gateway: consoleSource{g}, Log: g.audit})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); c.Run(ctx) }()
				b.Cleanup(func() { cancel(); <-done })
			}
			ctx := withConnInfo(context.Background())
			w := &discardWriter{h: http.Header{}}
			u, _ := url.Parse("https://localhost/64")
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				r, cancel := benchRequest(ctx, u, cs)
				g.ServeHTTP(w, r)
				cancel()
			}
		})
	}
}

// TestConsoleCloseLive closes a live stream as an operator does from the
// console: the stream ends, and its decision record says deny, reason
// admin.closed, rule admin.console (not a re-evaluation's rule).
func TestConsoleCloseLive(t *testing.T) {
	up := streamUpstream(t)
	fx := newFixture(t, up.URL, "[127.0.0.1]", "{login: none, device: {certificate: off}}", "")
	front := httptest.NewUnstartedServer(fx.g)
	front.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return withConnInfo(ctx) }
	front.StartTLS()
	defer front.Close()

	resp, err := front.Client().Get(front.URL + "/live")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	src := consoleSource{fx.g}
	var id string
	src.Live(func(c *console.Conn) bool { id = c.RequestID; return false })
	if id == "" {
		t.Fatal("the stream is not in the live registry")
	}
	if !src.CloseLive(id) {
		t.Fatalf("CloseLive(%s) found nothing", id)
	}
	if src.CloseLive("no-such-request") {
		t.Error("CloseLive of an unknown id reported a close")
	}
	io.Copy(io.Discard, br) // ends when the gateway closes the stream
	waitFor(t, "the record", func() bool { return countLines(t, fx.records) == 1 })
	b, _ := os.ReadFile(fx.records)
	type record struct {
		RequestID string `json:"request_id"`
		Verdict   string `json:"verdict"`
		Reason    string `json:"reason"`
		Rule      string `json:"rule"`
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	want := record{id, "deny", "admin.closed", "admin.console"}
	if rec != want {
		t.Errorf("record %+v, want %+v", rec, want)
	}
}

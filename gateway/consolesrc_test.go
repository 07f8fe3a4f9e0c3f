package gateway

import (
	"context"
	"net/http"
	"net/url"
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
			g, cs := benchGateway(b, up.URL)
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

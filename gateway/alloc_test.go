package gateway

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
)

// proxyAllocBudget is how many allocations per request the gateway may
// make beyond what httputil.ReverseProxy makes for the same request
// (issue #15): the request state (input, live entry, request id, identity
// and forwarding values in one); the registry's cancelable context (five:
// the context, its cancel func, its Done channel, and its parent's
// children map) and the request copy carrying it; the re-evaluator's
// Close func; and the outbound header map's growth past eight headers as
// the identity and forwarding headers are added (three).
const proxyAllocBudget = 1 + 5 + 1 + 1 + 3

// TestProxyAllocs pins the allocations of an allowed, proxied request
// with the full policy (device certificate, posture, risk, decision
// record, assertion) against the bare proxy's, measured the same way in
// the same process: a new allocation on the path fails it.
func TestProxyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	up := benchUpstream(t)
	g, cs, _ := benchGatewayWith(t, up, "", "login: none\n      user: {max_risk: medium, unknown_risk: allow}")
	ctx := benchConnContext()
	w := &discardWriter{h: http.Header{}}
	u, _ := url.Parse("https://localhost/64")
	gw := testing.AllocsPerRun(500, func() {
		clear(w.h)
		r, cancel := benchRequest(ctx, u, cs)
		g.ServeHTTP(w, r)
		cancel()
	})
	if w.status != http.StatusOK {
		t.Fatalf("status %d, want 200", w.status)
	}

	target, _ := url.Parse(up)
	rc := &ResourceConfig{}
	rc.Timeouts.Dial, rc.Timeouts.ResponseHeader = 5e9, 60e9
	_, tr, err := newProxy(rc, up, &Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport:  tr,
		BufferPool: bufPool,
	}
	bare := testing.AllocsPerRun(500, func() {
		clear(w.h)
		r, cancel := benchRequest(context.Background(), u, nil)
		rp.ServeHTTP(w, r)
		cancel()
	})
	t.Logf("allocations per request: gateway %.0f, bare proxy %.0f", gw, bare)
	if extra := gw - bare; extra > proxyAllocBudget {
		t.Errorf("the gateway makes %.0f allocations per request beyond the bare proxy's %.0f, want at most %d", extra, bare, proxyAllocBudget)
	}
}

package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"portcullis/posture"
)

// startBenchRedis runs a redis-server (append-only, fsync always) on a
// free loopback port for the benchmark, or skips when it is not
// installed.
func startBenchRedis(b *testing.B) string {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			b.Fatalf("redis-server not installed: %v", err)
		}
		b.Skipf("redis-server not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", b.TempDir(),
		"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(25 * time.Millisecond)
	}
	b.Fatal("redis-server did not start")
	return ""
}

// BenchmarkServeHTTPStores is BenchmarkServeHTTP with the embedded store
// and with the store shared through Redis, side by side: each round runs
// a block of requests through one gateway, then through the other, so
// both see the same machine. It reports each one's time per request and
// redis/embedded, the Redis gateway's throughput as a fraction of the
// embedded one's. A request reads only the in-memory copy with either
// store, so the fraction should be 1 within noise.
func BenchmarkServeHTTPStores(b *testing.B) {
	up := benchUpstream(b)
	emb, cs := benchGateway(b, up)

	addr := startBenchRedis(b)
	fx := newFixture(b, up, "[localhost]", "\n      login: none\n      user: {max_risk: medium, unknown_risk: allow}"+
		"\n      device: {certificate: required, managed: true, compliant: true, max_threat: low}",
		fmt.Sprintf("state: {redis: {addrs: [%q]}}", addr))
	shared := fx.g
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); shared.runStore(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for !shared.shared.Status().Loaded {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := shared.store.ApplyPosture(context.Background(), []posture.PostureEvent{{
		Key: posture.DeviceKey{CA: "corp", ID: testDeviceID},
		Posture: posture.Posture{Source: "uem", EventID: "e1", Managed: true, Compliance: posture.Compliant,
			Threat: posture.ThreatNone, State: posture.StateActive, ObservedAt: time.Now()},
	}}); err != nil {
		b.Fatal(err)
	}

	cctx := withConnInfo(context.Background())
	w := &discardWriter{h: http.Header{}}
	u, _ := url.Parse("https://localhost/64")
	// Each fixture has its own device CA, so each gateway gets its own
	// device's connection.
	serve := func(g *Gateway, n int) time.Duration {
		cs := cs
		if g == shared {
			cs = fx.device
		}
		start := time.Now()
		for range n {
			clear(w.h)
			r, cancel := benchRequest(cctx, u, cs)
			g.ServeHTTP(w, r)
			cancel()
			if w.status != http.StatusOK {
				b.Fatalf("status %d, want 200: %v", w.status, w.h)
			}
		}
		return time.Since(start)
	}
	serve(emb, 100) // warm both: connections to the upstream, cached identity
	serve(shared, 100)
	const block = 200
	var tEmb, tRedis time.Duration
	rounds := 0
	b.ReportAllocs()
	for b.Loop() {
		if rounds%2 == 0 {
			tEmb += serve(emb, block)
			tRedis += serve(shared, block)
		} else {
			tRedis += serve(shared, block)
			tEmb += serve(emb, block)
		}
		rounds++
	}
	n := float64(rounds * block)
	b.ReportMetric(float64(tEmb.Nanoseconds())/n, "embedded_ns/req")
	b.ReportMetric(float64(tRedis.Nanoseconds())/n, "redis_ns/req")
	b.ReportMetric(float64(tEmb)/float64(tRedis), "redis/embedded")
}

package test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"portcullis/certs/devca"
)

// BenchmarkSignalToClosedReplicas is BenchmarkSignalToClosed across three
// replicas on one Redis: each device's websockets are spread over the
// three replicas, each signal (a UEM event marking one device
// non-compliant) is posted to replica 1, and the figure is the time from
// the feed's 2xx to the moment the last of that device's websockets on
// replicas 2 and 3 is seen closed by the client. It logs p50, p99 and
// max, and checks that no other device's websocket closed. No timing is
// asserted.
//
// Run: go test -run XXX -bench SignalToClosedReplicas -benchtime 1x ./test/
// Sizes: PORTCULLIS_BENCH_DEVICES (900), PORTCULLIS_BENCH_WS_PER_DEVICE
// (10). This process holds two descriptors per websocket (the client
// and the in-test upstream), so the default of 9,000 is what fits a hard
// limit of 20,000 open files; each replica holds two per websocket it
// serves.
func BenchmarkSignalToClosedReplicas(b *testing.B) {
	devices, perDevice := signalBenchSize(b)
	signals := min(100, devices/2)
	rd := startRedisPeer(b)
	e := newEnv(b)
	// Every websocket comes from 127.0.0.1: lift the per-address cap on
	// requests at upstreams (limits.upstream.per_ip, 512 by default).
	e.withLimits(fmt.Sprintf("  upstream: {per_ip: %d}", devices*perDevice))
	rs := replicaEnvs(b, e, 3, rd.addr())
	procs := make([]*gatewayProc, len(rs))
	for i, r := range rs {
		procs[i] = r.start()
	}

	ca, err := devca.LoadFiles(e.dir, "device-ca")
	if err != nil {
		b.Fatal(err)
	}
	type device struct {
		id   string
		cert tls.Certificate
	}
	devs := make([]device, devices)
	for i := range devs {
		id := uuid4()
		c, k, _, err := ca.IssueDevice(id, fmt.Sprintf("user%d@example.test", i), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			b.Fatal(err)
		}
		devs[i] = device{id, kp}
	}
	// Compliant posture for every device through replica 1, 50 events
	// per signed batch; then every replica must hold it.
	for i := 0; i < devices; i += 50 {
		var batch []json.RawMessage
		for _, d := range devs[i:min(i+50, devices)] {
			batch = append(batch, postureEvent("seed-"+d.id, d.id, true, time.Now()))
		}
		body, _ := json.Marshal(batch)
		if code, out := rs[0].postFeed(fmt.Sprintf("batch-%d", i), body, time.Now(), nil); code != 200 {
			b.Fatalf("seeding posture: %d %s", code, out)
		}
	}
	for i, p := range procs {
		got := ""
		for range 400 {
			if got = p.metric(`portcullis_posture_records{kind="device"}`); got == strconv.Itoa(devices) {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if got != strconv.Itoa(devices) {
			b.Fatalf("replica %d holds %s devices, want %d", i+1, got, devices)
		}
	}

	// Websocket j of a device is on replica j%3.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	socks := openBenchSockets(b, ctx, devices, perDevice, poolFrom(b, e.serverCA),
		func(i int) tls.Certificate { return devs[i].cert }, func(j int) int { return rs[j%3].port })
	if b.Failed() {
		return
	}
	closedAt, mu, readers := socks.closedAt, &socks.mu, &socks.readers
	b.Logf("%d websockets open on 3 replicas in %v", devices*perDevice, time.Since(start).Round(time.Millisecond))

	var lat []time.Duration
	b.ResetTimer()
	for s := range signals {
		d := devs[s]
		id := "bad-" + d.id
		now := time.Now()
		if code := tryPost(rs[0], id, postureEvent(id, d.id, false, now), now, e.feedKey); code != 200 {
			b.Fatalf("signal %d: %d", s, code)
		}
		acked := time.Now()
		var last time.Time
		deadline := acked.Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			done := true
			for j, t := range closedAt[s] {
				if j%3 == 0 {
					continue // on replica 1, which received the signal
				}
				if t.IsZero() {
					done = false
				} else if t.After(last) {
					last = t
				}
			}
			mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if last.IsZero() {
			b.Fatalf("signal %d: websockets on replicas 2 and 3 still open after 10 s", s)
		}
		if last.Before(acked) {
			last = acked // closed before the 2xx reached us
		}
		lat = append(lat, last.Sub(acked))
	}
	b.StopTimer()
	mu.Lock()
	for i := signals; i < devices; i++ {
		for j, t := range closedAt[i] {
			if !t.IsZero() {
				b.Errorf("device %d websocket %d closed without a signal", i, j)
			}
		}
	}
	mu.Unlock()
	pct := reportLatencies(b, lat)
	b.Logf("signal on replica 1 → last affected websocket closed on replicas 2 and 3, over %d signals with %d live websockets on 3 replicas: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		len(lat), devices*perDevice, pct(0.5), pct(0.99), pct(1))
	cancel()
	readers.Wait()
}

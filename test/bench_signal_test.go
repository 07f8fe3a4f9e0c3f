package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"portcullis/certs/devca"
)

// BenchmarkSignalToClosed holds live websockets through the gateway for
// many devices (10 each, each device with its own user), then sends
// one signal at a time (a UEM event marking one device non-compliant) and
// measures from the feed's 2xx to the moment the last of that device's
// websockets is seen closed by the client. It reports p50, p99 and max
// over the signals, and checks that no other device's websocket closed.
//
// Run: go test -run XXX -bench SignalToClosed -benchtime 1x ./test/
// Sizes: PORTCULLIS_BENCH_DEVICES (900), PORTCULLIS_BENCH_WS_PER_DEVICE (10).
// A proxied websocket holds two descriptors in the gateway (client and
// upstream) and two here (client and the in-test upstream), so the default
// of 9,000 fits a hard limit of 20,000 open files; raise the limit for more.
func BenchmarkSignalToClosed(b *testing.B) {
	devices, perDevice := signalBenchSize(b)
	signals := min(100, devices/2)
	e := newEnv(b)
	// Every websocket comes from 127.0.0.1: lift the per-IP cap on
	// concurrent upstream requests (limits.upstream.per_ip, 512).
	e.withLimits(fmt.Sprintf("  upstream: {per_ip: %d}", devices*perDevice))
	e.start()

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
	// Compliant posture for every device, 50 events per signed batch.
	for i := 0; i < devices; i += 50 {
		var batch []json.RawMessage
		for _, d := range devs[i:min(i+50, devices)] {
			batch = append(batch, postureEvent("seed-"+d.id, d.id, true, time.Now()))
		}
		body, _ := json.Marshal(batch)
		if code, out := e.postFeed(fmt.Sprintf("batch-%d", i), body, time.Now(), nil); code != 200 {
			b.Fatalf("seeding posture: %d %s", code, out)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	socks := openBenchSockets(b, ctx, devices, perDevice, poolFrom(b, e.serverCA),
		func(i int) tls.Certificate { return devs[i].cert }, func(int) int { return e.port })
	if b.Failed() {
		return
	}
	closedAt, mu, readers := socks.closedAt, &socks.mu, &socks.readers
	b.Logf("%d websockets open in %v", devices*perDevice, time.Since(start).Round(time.Millisecond))

	var lat []time.Duration
	b.ResetTimer()
	for s := range signals {
		d := devs[s]
		id := "bad-" + d.id
		now := time.Now()
		body := postureEvent(id, d.id, false, now)
		req, _ := http.NewRequest("POST", e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
		req.Header.Set("webhook-signature", signFeed(e.feedKey, id, now, body))
		resp, err := e.client("", "", true).Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("signal %d: %v %v", s, err, resp)
		}
		resp.Body.Close()
		acked := time.Now()
		var last time.Time
		deadline := acked.Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			done := true
			for _, t := range closedAt[s] {
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
		if last.IsZero() || last.Before(acked) {
			last = acked // closed before the 2xx reached us: the store commits, then answers
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
	b.Logf("signal to last affected websocket closed over %d signals with %d live websockets: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		len(lat), devices*perDevice, pct(0.5), pct(0.99), pct(1))
	cancel()
	readers.Wait()
}

// signalBenchSize returns the signal benchmarks' number of devices and
// websockets per device (PORTCULLIS_BENCH_DEVICES, default 900;
// PORTCULLIS_BENCH_WS_PER_DEVICE, default 10), with the open-file limit
// raised to its hard limit, or skips when that cannot hold two
// descriptors per websocket.
func signalBenchSize(b *testing.B) (devices, perDevice int) {
	devices, perDevice = envInt("PORTCULLIS_BENCH_DEVICES", 900), envInt("PORTCULLIS_BENCH_WS_PER_DEVICE", 10)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(2*devices*perDevice + 500); lim.Max < need {
		b.Skipf("%d websockets need %d open files; the hard limit is %d", devices*perDevice, need, lim.Max)
	}
	return devices, perDevice
}

// reportLatencies sorts lat, reports its p50, p99 and maximum in
// milliseconds as benchmark metrics, and returns the percentile function.
func reportLatencies(b *testing.B, lat []time.Duration) func(p float64) float64 {
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	return pct
}

// benchSockets are a signal benchmark's websockets, and when the gateway
// closed each.
type benchSockets struct {
	mu       sync.Mutex
	closedAt [][]time.Time // [device][websocket]; zero while open
	readers  sync.WaitGroup
}

// openBenchSockets opens perDevice websockets for each of devices
// devices, 64 at a time, presenting cert(i) and dialling websocket j of a
// device on port(j). Each has a reader that records when the gateway
// closed it; they stay open until ctx ends. Dial failures are test errors.
func openBenchSockets(b *testing.B, ctx context.Context, devices, perDevice int, roots *x509.CertPool,
	cert func(i int) tls.Certificate, port func(j int) int) *benchSockets {
	bs := &benchSockets{closedAt: make([][]time.Time, devices)}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range devices {
		bs.closedAt[i] = make([]time.Time, perDevice)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert(i)}},
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		hc := &http.Client{Transport: tr}
		for j := range perDevice {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				dctx, dcancel := context.WithTimeout(ctx, 60*time.Second)
				ws, _, err := websocket.Dial(dctx, fmt.Sprintf("wss://localhost:%d/ws", port(j)), &websocket.DialOptions{HTTPClient: hc})
				dcancel()
				if err != nil {
					b.Errorf("dial %d/%d: %v", i, j, err)
					return
				}
				bs.readers.Add(1)
				go func() {
					defer bs.readers.Done()
					defer ws.CloseNow()
					_, _, err := ws.Read(ctx)
					if err != nil && ctx.Err() == nil {
						bs.mu.Lock()
						bs.closedAt[i][j] = time.Now()
						bs.mu.Unlock()
					}
				}()
			}()
		}
	}
	wg.Wait()
	return bs
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

package redis

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"portcullis/posture"
)

// ingest writes n posture events in batches of batch from writers
// goroutines, each batch acknowledged only once stored.
func ingest(b *testing.B, db *posture.DB, n, batch, writers int, tag string) {
	var wg sync.WaitGroup
	per := n / writers
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i += batch {
				evs := make([]posture.PostureEvent, 0, batch)
				for j := i; j < i+batch && j < per; j++ {
					id := fmt.Sprintf("%s-%d-%d", tag, w, j)
					evs = append(evs, posture.PostureEvent{Key: posture.DeviceKey{CA: "ivanti", ID: id}, Posture: posture.Posture{
						Source: "uem", EventID: id, Managed: true, Compliance: posture.Compliant,
						Threat: posture.ThreatNone, State: posture.StateActive, ObservedAt: t0}})
				}
				if _, err := db.ApplyPosture(context.Background(), evs); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkIngest compares feed ingest through Redis with the embedded
// store in the same run: events/s, each batch acknowledged when stored.
func BenchmarkIngest(b *testing.B) {
	srv := startRedis(b)
	s, err := Open(Config{Addrs: []string{srv.addr()}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done; s.DB().Close() }()
	for s.Status().State != "ok" {
		time.Sleep(10 * time.Millisecond)
	}
	emb, err := posture.Open(b.TempDir(), posture.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	const n, batch, writers = 20000, 100, 8
	round := 0
	for b.Loop() {
		round++
		start := time.Now()
		ingest(b, s.DB(), n, batch, writers, fmt.Sprint("r", round))
		redisRate := float64(n) / time.Since(start).Seconds()
		start = time.Now()
		ingest(b, emb, n, batch, writers, fmt.Sprint("e", round))
		embRate := float64(n) / time.Since(start).Seconds()
		b.Logf("redis %.0f events/s, embedded %.0f events/s, ratio %.2f", redisRate, embRate, redisRate/embRate)
		b.ReportMetric(redisRate, "redis_events/s")
		b.ReportMetric(embRate, "embedded_events/s")
		b.ReportMetric(redisRate/embRate, "redis/embedded")
	}
}

// BenchmarkLoadMillionDevices measures how long a new replica takes to
// load 1,000,000 device records, and the heap its copy holds.
func BenchmarkLoadMillionDevices(b *testing.B) {
	srv := startRedis(b)
	c := srv.client()
	defer c.Close()
	ctx := context.Background()
	const n = 1_000_000
	rec := `{"event_id":"e","managed":true,"compliance":"compliant","threat":"none","state":"active","platform":"ios","os_version":"18.1","user":"user@example.com","observed_at":"2026-09-14T08:00:00Z","received_at":"2026-09-14T08:00:01Z"}`
	for i := 0; i < n; i += 10000 {
		p := c.Pipeline()
		for j := i; j < i+10000; j++ {
			p.HSet(ctx, "portcullis:devices", string(devKey("ivanti", fmt.Sprintf("device-%08d", j), "uem")), "1 "+rec)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	c.Set(ctx, "portcullis:rev", 1, 0)
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		s, err := Open(Config{Addrs: []string{srv.addr()}}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(rctx) }()
		for s.Status().State != "ok" {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if got := s.DB().Stats().Devices; got != n {
			b.Fatalf("loaded %d devices, want %d", got, n)
		}
		heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		b.Logf("load %.2f s, heap %.0f MiB", took.Seconds(), heap)
		b.ReportMetric(took.Seconds(), "load_s")
		b.ReportMetric(heap, "heap_MiB")
		cancel()
		<-done
		s.DB().Close()
	}
}

func devKey(ca, id, source string) []byte {
	var b []byte
	for _, p := range []string{ca, id, source} {
		b = append(b, byte(len(p)))
		b = append(b, p...)
	}
	return b
}

// BenchmarkDeviceLookup shows that a request's posture read is the same
// in-memory read with either store: no request waits on Redis.
func BenchmarkDeviceLookup(b *testing.B) {
	key := posture.DeviceKey{CA: "ivanti", ID: "dev-1"}
	recs := []posture.Record{{Bucket: posture.BucketDevices, Key: string(devKey(key.CA, key.ID, "uem")), Rev: 1,
		Value: []byte(`{"event_id":"e","managed":true,"compliance":"compliant","threat":"none","state":"active","observed_at":"2026-09-14T08:00:00Z","received_at":"2026-09-14T08:00:00Z"}`)}}
	shared := posture.NewShared(downBackend{}, posture.Options{})
	shared.Replace(recs, 1)
	emb, err := posture.Open(b.TempDir(), posture.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	if _, err := emb.ApplyPosture(context.Background(), []posture.PostureEvent{postureEvent("e", t0, posture.Compliant)}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		db   *posture.DB
	}{{"embedded", emb}, {"redis", shared}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.db.Device(key) == nil {
					b.Fatal("no device")
				}
			}
		})
	}
}

type downBackend struct{}

func (downBackend) Commit(context.Context, []posture.Op) (uint64, error) {
	return 0, posture.ErrUnavailable
}
func (downBackend) Close() error { return nil }

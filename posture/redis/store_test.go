package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	goredis "github.com/redis/go-redis/v9"

	"portcullis/internal/conf"
	"portcullis/posture"
)

// replica is one Store with its follower running.
type replica struct {
	*Store
	cancel context.CancelFunc
	done   chan struct{}
}

func newReplica(t *testing.T, srv *redisServer, cfg Config) *replica {
	t.Helper()
	if cfg.URL == "" && len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{srv.addr()}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = conf.Duration(2 * time.Second)
	}
	s, err := Open(cfg, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{Store: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
	r.DB().Close()
}

// waitFor polls cond, bounded in count, yielding between tries by
// waiting on the replica's next install or a short tick.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for range 2000 { // 10 s at most
		if cond() {
			return
		}
		<-tick.C
	}
	t.Fatalf("timed out waiting for %s", what)
}

func waitLoaded(t *testing.T, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		waitFor(t, "the copy to load", func() bool { return r.Status().State == "ok" })
	}
}

var (
	t0  = time.Now().UTC().Truncate(time.Second)
	dev = posture.DeviceKey{CA: "ivanti", ID: "dev-1"}
)

func postureEvent(id string, observed time.Time, c posture.Compliance) posture.PostureEvent {
	return posture.PostureEvent{Key: dev, Posture: posture.Posture{
		Source: "uem", EventID: id, Managed: true, Compliance: c,
		Threat: posture.ThreatNone, State: posture.StateActive, ObservedAt: observed,
	}}
}

func TestWriteOnOneReplicaReachesTheOther(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	waitLoaded(t, a, b)
	changes, unsub := b.DB().Subscribe(16)
	defer unsub()

	out, err := a.DB().ApplyPosture(context.Background(), []posture.PostureEvent{postureEvent("e1", t0, posture.NotCompliant)})
	if err != nil || out[0] != posture.Applied {
		t.Fatalf("ApplyPosture = %v, %v; want applied", out, err)
	}
	// A writer reads its own write at once.
	if d := a.DB().Device(dev); d == nil || d.Records[0].Compliance != posture.NotCompliant {
		t.Fatalf("writer's copy: %+v", d)
	}
	select {
	case ch := <-changes:
		if ch.Kind != posture.DeviceChanged || *ch.Device != dev {
			t.Errorf("change on the other replica = %+v", ch)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change reached the other replica")
	}
	if d := b.DB().Device(dev); d == nil || d.Records[0].Compliance != posture.NotCompliant {
		t.Fatalf("other replica's copy: %+v", d)
	}

	// Risk and revocations travel the same way.
	if _, err := a.DB().ApplyRisk(context.Background(), []posture.RiskEvent{{Risk: posture.UserRisk{
		User: "Ann@Example.com", Level: posture.RiskHigh, Source: "okta", EventID: "r1", ObservedAt: t0}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB().Revoke(context.Background(), posture.Revocation{Kind: posture.RevokeSession, Session: "s-1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "risk and revocation on the other replica", func() bool {
		r := b.DB().Risk("ann@example.com")
		return r != nil && r.Level == posture.RiskHigh && b.DB().SessionRevoked("s-1")
	})
}

func TestSameEventOnTwoReplicasIsAppliedOnce(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	waitLoaded(t, a, b)
	for round := range 20 {
		e := postureEvent(fmt.Sprintf("dup-%d", round), t0.Add(time.Duration(round)*time.Second), posture.Compliant)
		var wg sync.WaitGroup
		outs := make([][]posture.Outcome, 2)
		errs := make([]error, 2)
		for i, r := range []*replica{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = r.DB().ApplyPosture(context.Background(), []posture.PostureEvent{e})
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: errors %v, %v", round, errs[0], errs[1])
		}
		applied := 0
		for _, o := range outs {
			if o[0] == posture.Applied {
				applied++
			} else if o[0] != posture.Duplicate {
				t.Errorf("round %d: outcome %v, want applied or duplicate", round, o[0])
			}
		}
		if applied != 1 {
			t.Errorf("round %d: applied %d times, want once (%v, %v)", round, applied, outs[0][0], outs[1][0])
		}
	}
}

// TestOrderingRuleIsTheEmbeddedStoresRule runs one table of event
// sequences through the embedded store and through two Redis replicas
// that receive the events in different orders: every copy must end with
// the same record. The ordering and tie rule exists once, in package
// posture; the Redis script only checks revisions, so it cannot disagree.
func TestOrderingRuleIsTheEmbeddedStoresRule(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	waitLoaded(t, a, b)

	threat := func(id string, at time.Time, c posture.Compliance, th posture.ThreatLevel) posture.PostureEvent {
		e := postureEvent(id, at, c)
		e.Posture.Threat = th
		return e
	}
	tests := []struct {
		name   string
		events []posture.PostureEvent
	}{
		{"later wins", []posture.PostureEvent{threat("a", t0, posture.Compliant, posture.ThreatNone), threat("b", t0.Add(time.Second), posture.NotCompliant, posture.ThreatNone)}},
		{"earlier loses", []posture.PostureEvent{threat("a", t0.Add(time.Second), posture.Compliant, posture.ThreatNone), threat("b", t0, posture.NotCompliant, posture.ThreatNone)}},
		{"tie: restrictive wins", []posture.PostureEvent{threat("a", t0, posture.Compliant, posture.ThreatHigh), threat("b", t0, posture.NotCompliant, posture.ThreatLow)}},
		{"tie, other order", []posture.PostureEvent{threat("b", t0, posture.NotCompliant, posture.ThreatLow), threat("a", t0, posture.Compliant, posture.ThreatHigh)}},
		{"three in one second", []posture.PostureEvent{threat("a", t0, posture.Compliant, posture.ThreatNone), threat("b", t0, posture.Compliant, posture.ThreatMedium), threat("c", t0, posture.NotCompliant, posture.ThreatNone)}},
	}
	ignore := cmpopts.IgnoreFields(posture.Posture{}, "ReceivedAt", "Rev", "EventID")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := posture.DeviceKey{CA: "ivanti", ID: fmt.Sprintf("order-%d", i)}
			emb, err := posture.Open(t.TempDir(), posture.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer emb.Close()
			for j, e := range tt.events {
				e.Key = key
				e.Posture.EventID = fmt.Sprintf("%s-%d", e.Posture.EventID, i)
				if _, err := emb.ApplyPosture(context.Background(), []posture.PostureEvent{e}); err != nil {
					t.Fatal(err)
				}
				// Replica a gets the events in order, b in reverse,
				// interleaved: both write the one shared record.
				r := a
				if j%2 == 1 {
					r = b
				}
				if _, err := r.DB().ApplyPosture(context.Background(), []posture.PostureEvent{e}); err != nil {
					t.Fatal(err)
				}
			}
			want := emb.Device(key)
			if want == nil {
				t.Fatal("embedded store has no record")
			}
			// The same events again in reverse, on the other replicas:
			// all duplicates, nothing changes.
			for j := len(tt.events) - 1; j >= 0; j-- {
				e := tt.events[j]
				e.Key = key
				e.Posture.EventID = fmt.Sprintf("%s-%d", e.Posture.EventID, i)
				r := b
				if j%2 == 1 {
					r = a
				}
				out, err := r.DB().ApplyPosture(context.Background(), []posture.PostureEvent{e})
				if err != nil || out[0] != posture.Duplicate {
					t.Fatalf("replay = %v, %v; want duplicate", out, err)
				}
			}
			for _, r := range []*replica{a, b} {
				waitFor(t, "the record on both replicas", func() bool {
					d := r.DB().Device(key)
					return d != nil && cmp.Diff(want.Records, d.Records, ignore) == ""
				})
			}
		})
	}
}

func TestRedisDownFailsWritesThenResumes(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	waitLoaded(t, a, b)
	if _, err := a.DB().ApplyPosture(context.Background(), []posture.PostureEvent{postureEvent("before", t0, posture.Compliant)}); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	_, err := a.DB().ApplyPosture(context.Background(), []posture.PostureEvent{postureEvent("during", t0.Add(time.Second), posture.NotCompliant)})
	if !errors.Is(err, posture.ErrUnavailable) {
		t.Fatalf("write with Redis down: %v, want ErrUnavailable", err)
	}
	waitFor(t, "the replica to notice", func() bool { return b.Status().State == "disconnected" })
	// Reads keep answering from the copy.
	if d := b.DB().Device(dev); d == nil || d.Records[0].Compliance != posture.Compliant {
		t.Fatalf("copy while disconnected: %+v", d)
	}
	if !b.Ready() {
		t.Error("a loaded replica became unready while Redis is down")
	}
	srv.start()
	waitLoaded(t, a, b)
	// The acknowledged write survived the kill (appendfsync always); the
	// refused one is retried by its sender.
	if d := b.DB().Device(dev); d == nil || d.Records[0].EventID != "before" {
		t.Fatalf("after restart: %+v", d)
	}
	out, err := a.DB().ApplyPosture(context.Background(), []posture.PostureEvent{postureEvent("during", t0.Add(time.Second), posture.NotCompliant)})
	if err != nil || out[0] != posture.Applied {
		t.Fatalf("retry = %v, %v", out, err)
	}
	waitFor(t, "the retried write on the other replica", func() bool {
		d := b.DB().Device(dev)
		return d != nil && d.Records[0].Compliance == posture.NotCompliant
	})
}

func TestRedisRestartedEmpty(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	waitLoaded(t, a, b)
	ctx := context.Background()
	if _, err := a.DB().ApplyPosture(ctx, []posture.PostureEvent{postureEvent("p", t0, posture.Compliant)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB().Revoke(ctx, posture.Revocation{Kind: posture.RevokeUser, User: "ann@example.com", Before: t0}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see both", func() bool {
		return b.DB().Device(dev) != nil && !b.DB().UserRevokedBefore("ann@example.com").IsZero()
	})
	srv.wipe()
	srv.start()
	// Posture is gone (never served as fresh from a copy Redis no longer
	// backs); the revocation is written back by the replicas.
	for _, r := range []*replica{a, b} {
		waitFor(t, "the reload after the reset", func() bool {
			return r.Status().State == "ok" && r.DB().Device(dev) == nil && !r.DB().UserRevokedBefore("ann@example.com").IsZero()
		})
	}
	c := srv.client()
	defer c.Close()
	waitFor(t, "the revocation written back to Redis", func() bool {
		n, _ := c.HLen(ctx, "portcullis:revocations").Result()
		return n == 1
	})
}

func TestTrimmedStreamReloads(t *testing.T) {
	srv := startRedis(t)
	a := newReplica(t, srv, Config{})
	waitLoaded(t, a)
	ctx := context.Background()
	for i := range 5 {
		if _, err := a.DB().ApplyPosture(ctx, []posture.PostureEvent{postureEvent(fmt.Sprint("t", i), t0.Add(time.Duration(i)*time.Second), posture.Compliant)}); err != nil {
			t.Fatal(err)
		}
	}
	// b starts from a stream whose first entries are gone: it must load
	// the hashes, not replay.
	c := srv.client()
	defer c.Close()
	if err := c.XTrimMaxLen(ctx, "portcullis:changes", 1).Err(); err != nil {
		t.Fatal(err)
	}
	b := newReplica(t, srv, Config{})
	waitLoaded(t, b)
	if d := b.DB().Device(dev); d == nil || d.Records[0].EventID != "t4" {
		t.Fatalf("b after load: %+v", d)
	}
}

func TestGapInStreamAsksForReload(t *testing.T) {
	s, err := Open(Config{Addrs: []string{"127.0.0.1:1"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gen := "g1"
	s.gen.Store(&gen)
	s.rev = 3
	op := posture.Op{Bucket: posture.BucketCursors, Key: "c", Value: []byte("v")}
	msg := func(id, g string) goredis.XMessage {
		return goredis.XMessage{ID: id, Values: map[string]any{"e": g, "b": string(appendOp(nil, &op))}}
	}
	tests := []struct {
		name    string
		msgs    []goredis.XMessage
		wantErr error
		wantRev uint64
	}{
		{"in order", []goredis.XMessage{msg("0-4", gen), msg("0-5", gen)}, nil, 5},
		{"old entries skipped", []goredis.XMessage{msg("0-5", gen), msg("0-6", gen)}, nil, 6},
		{"gap", []goredis.XMessage{msg("0-7", gen), msg("0-9", gen)}, errGap, 7},
		{"foreign entry id skipped", []goredis.XMessage{msg("1700000000000-0", gen)}, nil, 7},
		{"other generation skipped", []goredis.XMessage{msg("0-8", "g2")}, nil, 8},
		{"corrupt payload skipped", []goredis.XMessage{{ID: "0-9", Values: map[string]any{"e": gen, "b": "\x09"}}}, nil, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.install([]goredis.XStream{{Stream: "x", Messages: tt.msgs}})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("install = %v, want %v", err, tt.wantErr)
			}
			if s.rev != tt.wantRev {
				t.Errorf("rev = %d, want %d", s.rev, tt.wantRev)
			}
		})
	}
	if got := s.DB().Cursor("c"); got != "v" {
		t.Errorf("cursor = %q, want v", got)
	}
}

func TestForeignValuesAreIgnored(t *testing.T) {
	srv := startRedis(t)
	c := srv.client()
	defer c.Close()
	ctx := context.Background()
	// Values the store did not write: no revision, bad JSON, a key that
	// names another subject than its value, a wrong key shape.
	c.HSet(ctx, "portcullis:devices", "junk", "not a record")
	c.HSet(ctx, "portcullis:devices", string([]byte{6, 'i', 'v', 'a', 'n', 't', 'i', 1, 'x', 3, 'u', 'e', 'm'}), "7 {not json")
	c.HSet(ctx, "portcullis:users", "eve@example.com", "3 {\"level\":\"catastrophic\",\"source\":\"x\",\"event_id\":\"y\"}")
	c.HSet(ctx, "portcullis:revocations", "x", "4 {\"kind\":\"user\",\"user\":\"bob@example.com\",\"before\":\"2026-01-01T00:00:00Z\",\"source\":\"s\",\"event_id\":\"e\",\"observed_at\":\"2026-01-01T00:00:00Z\"}")
	c.XAdd(ctx, &goredis.XAddArgs{Stream: "portcullis:changes", ID: "0-1", Values: []any{"e", "other", "b", "\xff\xff"}})

	a := newReplica(t, srv, Config{})
	waitLoaded(t, a)
	if n := a.DB().Stats(); n.Devices != 0 || n.Users != 0 {
		t.Errorf("foreign values loaded: %+v", n)
	}
	if !a.DB().UserRevokedBefore("bob@example.com").IsZero() {
		t.Error("a revocation stored under a foreign key was trusted")
	}
	if a.Foreign() < 4 {
		t.Errorf("Foreign() = %d, want at least 4 reported", a.Foreign())
	}
	// Writes still work, overwriting the corrupt record.
	out, err := a.DB().ApplyPosture(ctx, []posture.PostureEvent{{Key: posture.DeviceKey{CA: "ivanti", ID: "x"}, Posture: posture.Posture{
		Source: "uem", EventID: "ok", Compliance: posture.Compliant, ObservedAt: t0}}})
	if err != nil || out[0] != posture.Applied {
		t.Fatalf("write over a corrupt record = %v, %v", out, err)
	}
	// A foreign type under a store key refuses writes, clearly, and
	// crashes nothing.
	c.Del(ctx, "portcullis:users")
	c.Set(ctx, "portcullis:users", "a string", 0)
	_, err = a.DB().ApplyRisk(ctx, []posture.RiskEvent{{Risk: posture.UserRisk{User: "x", Level: posture.RiskLow, Source: "s", EventID: "e2", ObservedAt: t0}}})
	if !errors.Is(err, posture.ErrUnavailable) {
		t.Errorf("write with a foreign key type: %v, want ErrUnavailable", err)
	}
}

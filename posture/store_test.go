package posture

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func openTest(t *testing.T, dir string, c *clock) *DB {
	t.Helper()
	db, err := Open(dir, Options{Now: c.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var dev = DeviceKey{CA: "ivanti", ID: "dev-1"}

func ev(id, source string, observed time.Time, c Compliance) PostureEvent {
	return PostureEvent{Key: dev, Posture: Posture{
		Source: source, EventID: id, Managed: true, Compliance: c,
		Threat: ThreatNone, State: StateActive, ObservedAt: observed,
	}}
}

func apply(t *testing.T, db *DB, events ...PostureEvent) []Outcome {
	t.Helper()
	out, err := db.ApplyPosture(context.Background(), events)
	if err != nil {
		t.Fatalf("ApplyPosture: %v", err)
	}
	return out
}

func TestApplyPostureOrdering(t *testing.T) {
	c := &clock{t: t0}
	db := openTest(t, t.TempDir(), c)

	tests := []struct {
		name  string
		ev    PostureEvent
		want  Outcome
		compl Compliance
	}{
		{"first", ev("e1", "uem", t0.Add(-time.Minute), Compliant), Applied, Compliant},
		{"duplicate id", ev("e1", "uem", t0, NotCompliant), Duplicate, Compliant},
		{"newer", ev("e2", "uem", t0, NotCompliant), Applied, NotCompliant},
		{"older", ev("e3", "uem", t0.Add(-30*time.Second), Compliant), OutOfOrder, NotCompliant},
		{"equal, less restrictive", ev("e4", "uem", t0, Compliant), OutOfOrder, NotCompliant},
		{"newer again", ev("e5", "uem", t0.Add(time.Second), Compliant), Applied, Compliant},
		{"equal, more restrictive", ev("e6", "uem", t0.Add(time.Second), NotCompliant), Applied, NotCompliant},
		{"later second", ev("e7", "uem", t0.Add(2*time.Second+700*time.Millisecond), Compliant), Applied, Compliant},
		// Sources that send whole seconds tie with the fractional record
		// of the same second: the more restrictive report wins.
		{"same second, earlier fraction, more restrictive", ev("e8", "uem", t0.Add(2*time.Second), NotCompliant), Applied, NotCompliant},
		{"same second, later fraction, less restrictive", ev("e9", "uem", t0.Add(2*time.Second+900*time.Millisecond), Compliant), OutOfOrder, NotCompliant},
		{"earlier second", ev("e10", "uem", t0.Add(time.Second+999*time.Millisecond), NotCompliant), OutOfOrder, NotCompliant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := apply(t, db, tt.ev)
			if got[0] != tt.want {
				t.Errorf("outcome = %v, want %v", got[0], tt.want)
			}
			d := db.Device(dev)
			if d == nil || len(d.Records) != 1 {
				t.Fatalf("Device = %+v, want one record", d)
			}
			if d.Records[0].Compliance != tt.compl {
				t.Errorf("compliance = %v, want %v", d.Records[0].Compliance, tt.compl)
			}
		})
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	db, err := Open(dir, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := ev("e1", "zimperium", t0.Add(-time.Minute), NotCompliant)
	e.Posture.Threat = ThreatCritical
	e.Posture.ThreatNames = []string{"MITM"}
	e.Posture.GraceUntil = t0.Add(time.Hour)
	e.Posture.Platform, e.Posture.OSVersion, e.Posture.User = "ios", "17.6.1", "j.doe@acme.example"
	e.Posture.Reasons = []string{"mtd_threat"}
	apply(t, db, e, ev("e2", "intune", t0.Add(-time.Minute), Compliant))
	if _, err := db.ApplyRisk(context.Background(), []RiskEvent{{Risk: UserRisk{User: "J.Doe@Acme.Example", Level: RiskHigh, Source: "okta", EventID: "r1", ObservedAt: t0}}}); err != nil {
		t.Fatal(err)
	}
	want := db.Device(dev)
	wantRisk := db.Risk("j.doe@acme.example")
	if wantRisk == nil {
		t.Fatal("risk not stored under the lower-cased user")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyPosture(context.Background(), []PostureEvent{ev("e9", "uem", t0, Compliant)}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v, want ErrClosed", err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	db2 := openTest(t, dir, c)
	if diff := cmp.Diff(want, db2.Device(dev)); diff != "" {
		t.Errorf("device after reopen (-want +got):\n%s", diff)
	}
	if got := db2.Device(dev).Records; got[0].Source != "intune" || got[1].Source != "zimperium" {
		t.Errorf("records not in source order: %s, %s", got[0].Source, got[1].Source)
	}
	if diff := cmp.Diff(wantRisk, db2.Risk("j.doe@acme.example")); diff != "" {
		t.Errorf("risk after reopen (-want +got):\n%s", diff)
	}
	if got := db2.Stats(); got.Devices != 1 || got.DeviceRecords != 2 || got.Users != 1 {
		t.Errorf("Stats = %+v", got)
	}
	// The dedup window survives a restart.
	if got := apply(t, db2, ev("e1", "zimperium", t0, Compliant)); got[0] != Duplicate {
		t.Errorf("replay after reopen = %v, want duplicate", got[0])
	}
}

func TestDedupExpires(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	db, err := Open(dir, Options{Now: c.Now, DedupTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	apply(t, db, ev("e1", "uem", t0, Compliant))
	c.Set(t0.Add(2 * time.Hour))
	// Expired: the id is new again (and, being no newer, out of order).
	if got := apply(t, db, ev("e1", "uem", t0, Compliant)); got[0] != OutOfOrder {
		t.Errorf("after expiry = %v, want out_of_order", got[0])
	}
	c.Set(t0.Add(4 * time.Hour))
	apply(t, db, ev("e2", "uem", t0.Add(4*time.Hour), Compliant)) // sweeps
	if n := len(db.dedup); n != 1 {
		t.Errorf("dedup entries after sweep = %d, want 1", n)
	}
}

func TestBatchAllOrNothing(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	bad := ev("e2", "uem", t0, Compliant)
	bad.Key.ID = ""
	if _, err := db.ApplyPosture(context.Background(), []PostureEvent{ev("e1", "uem", t0, Compliant), bad}); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("err = %v, want ErrInvalidEvent", err)
	}
	if db.Device(dev) != nil {
		t.Error("part of a rejected batch was stored")
	}
}

func TestBatchWithinItself(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	got := apply(t, db,
		ev("e1", "uem", t0, Compliant),
		ev("e1", "uem", t0, Compliant),
		ev("e2", "uem", t0.Add(-time.Second), NotCompliant),
		ev("e3", "uem", t0.Add(time.Second), NotCompliant),
	)
	want := []Outcome{Applied, Duplicate, OutOfOrder, Applied}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestMergeEqualTimestamp(t *testing.T) {
	old := Posture{Source: "s", Managed: true, Compliance: Compliant, Threat: ThreatLow, State: StateActive,
		GraceUntil: t0.Add(time.Hour), Reasons: []string{"a"}, ObservedAt: t0}
	nw := Posture{Source: "s", Managed: true, Compliance: ComplianceUnknown, Threat: ThreatHigh, State: StateLost,
		GraceUntil: t0.Add(time.Minute), Reasons: []string{"b"}, ObservedAt: t0}
	got := MoreRestrictive(&old, &nw)
	want := Posture{Source: "s", Managed: true, Compliance: ComplianceUnknown, Threat: ThreatHigh, State: StateLost,
		GraceUntil: t0.Add(time.Minute), Reasons: []string{"a", "b"}, ObservedAt: t0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

func TestRiskOrdering(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	r := func(id string, at time.Time, l RiskLevel) []RiskEvent {
		return []RiskEvent{{Risk: UserRisk{User: "u@x", Level: l, Source: "okta", EventID: id, ObservedAt: at}}}
	}
	tests := []struct {
		name  string
		batch []RiskEvent
		want  Outcome
		level RiskLevel
	}{
		{"first", r("1", t0, RiskMedium), Applied, RiskMedium},
		{"older", r("2", t0.Add(-time.Second), RiskHigh), OutOfOrder, RiskMedium},
		{"equal lower", r("3", t0, RiskLow), OutOfOrder, RiskMedium},
		{"equal higher", r("4", t0, RiskHigh), Applied, RiskHigh},
		{"newer lower", r("5", t0.Add(time.Second), RiskLow), Applied, RiskLow},
		{"duplicate", r("5", t0.Add(time.Hour), RiskHigh), Duplicate, RiskLow},
		{"same second, later fraction, higher", r("6", t0.Add(time.Second+400*time.Millisecond), RiskHigh), Applied, RiskHigh},
		{"same second, later fraction, lower", r("7", t0.Add(time.Second+800*time.Millisecond), RiskLow), OutOfOrder, RiskHigh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ApplyRisk(context.Background(), tt.batch)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != tt.want {
				t.Errorf("outcome = %v, want %v", got[0], tt.want)
			}
			if l := db.Risk("u@x").Level; l != tt.level {
				t.Errorf("level = %v, want %v", l, tt.level)
			}
		})
	}
}

func TestSubscribe(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	ch, cancel := db.Subscribe(1)
	defer cancel()
	apply(t, db, ev("e1", "uem", t0, Compliant))
	apply(t, db, ev("e2", "uem", t0.Add(time.Second), Compliant)) // dropped: channel full
	c := <-ch
	if c.Kind != DeviceChanged || *c.Device != dev || c.Lost {
		t.Errorf("first change = %+v", c)
	}
	if _, err := db.ApplyRisk(context.Background(), []RiskEvent{{Risk: UserRisk{User: "u", Level: RiskLow, Source: "okta", EventID: "r", ObservedAt: t0}}}); err != nil {
		t.Fatal(err)
	}
	c = <-ch
	if c.Kind != RiskChanged || c.User != "u" || !c.Lost {
		t.Errorf("change after a drop = %+v, want Lost", c)
	}
	if got := db.Stats().ChangesDropped; got != 1 {
		t.Errorf("ChangesDropped = %d, want 1", got)
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
}

func TestConcurrentApply(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := DeviceKey{CA: "ca", ID: string(rune('a' + w))}
				e := PostureEvent{Key: k, Posture: Posture{Source: "uem", EventID: string(rune('a'+w)) + "-" + string(rune('0'+i%10)) + string(rune('0'+i/10)),
					ObservedAt: t0.Add(time.Duration(i) * time.Second), Compliance: Compliant}}
				if _, err := db.ApplyPosture(context.Background(), []PostureEvent{e}); err != nil {
					t.Error(err)
				}
				_ = db.Device(k)
			}
		})
	}
	wg.Wait()
	for w := range writers {
		d := db.Device(DeviceKey{CA: "ca", ID: string(rune('a' + w))})
		if d == nil || !d.Records[0].ObservedAt.Equal(t0.Add((each-1)*time.Second)) {
			t.Errorf("writer %d: last record %+v", w, d)
		}
	}
	if got := db.Stats(); got.Devices != writers {
		t.Errorf("Devices = %d, want %d", got.Devices, writers)
	}
}

func TestLookupAllocs(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	apply(t, db, ev("e1", "uem", t0, Compliant))
	if _, err := db.ApplyRisk(context.Background(), []RiskEvent{{Risk: UserRisk{User: "u", Level: RiskLow, Source: "okta", EventID: "r", ObservedAt: t0}}}); err != nil {
		t.Fatal(err)
	}
	miss := DeviceKey{CA: "ivanti", ID: "nope"}
	n := testing.AllocsPerRun(100, func() {
		if db.Device(dev) == nil || db.Device(miss) != nil || db.Risk("u") == nil {
			t.Fatal("lookup failed")
		}
	})
	if n != 0 {
		t.Errorf("allocs per lookup = %v, want 0", n)
	}
}

func BenchmarkDeviceLookup(b *testing.B) {
	db, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 10000
	batch := make([]PostureEvent, n)
	keys := make([]DeviceKey, n)
	for i := range batch {
		keys[i] = DeviceKey{CA: "ivanti", ID: "device-" + itoa(i)}
		batch[i] = PostureEvent{Key: keys[i], Posture: Posture{Source: "uem", EventID: itoa(i), ObservedAt: t0, Compliance: Compliant}}
	}
	if _, err := db.ApplyPosture(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if db.Device(keys[i%n]) == nil {
			b.Fatal("missing")
		}
		i++
	}
}

func BenchmarkDeviceLookupParallel(b *testing.B) {
	db, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ApplyPosture(context.Background(), []PostureEvent{ev("e1", "uem", t0, Compliant)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if db.Device(dev) == nil {
				b.Fatal("missing")
			}
		}
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

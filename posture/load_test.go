package posture

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

type failingBackend struct{}

func (failingBackend) Commit(context.Context, []Op) (uint64, error) { return 0, ErrUnavailable }
func (failingBackend) Close() error                                 { return nil }

func loadRecord(t *testing.T, ca, id, source, platform string, rev uint64) Record {
	t.Helper()
	p := Posture{Source: source, EventID: fmt.Sprint("e", rev), Managed: true, Compliance: Compliant,
		Threat: ThreatNone, State: StateActive, Platform: platform, ObservedAt: t0}
	v, err := encodePosture(&p)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Bucket: BucketDevices, Key: string(deviceRecordKey(DeviceKey{CA: ca, ID: id}, source)), Value: v, Rev: rev}
}

// TestLoadConcurrent adds records from several goroutines at once, with
// the duplicates a scan may return, and checks the copy is what a
// sequential load gives: every source in order, the higher revision of a
// duplicate, corrupt records skipped and counted.
func TestLoadConcurrent(t *testing.T) {
	var recs []Record
	const devices = 2000
	for i := range devices {
		id := fmt.Sprintf("dev-%d", i)
		// Two sources, the later one first, and the first one twice:
		// once stale (rev 1), once current (rev 3).
		recs = append(recs, loadRecord(t, "ca", id, "zeta", "ios", 2))
		recs = append(recs, loadRecord(t, "ca", id, "alpha", "ios", 1))
		recs = append(recs, loadRecord(t, "ca", id, "alpha", "android", 3))
	}
	recs = append(recs,
		Record{Bucket: BucketDevices, Key: "\x05ab", Value: []byte(`{}`), Rev: 4},                                                  // bad key
		Record{Bucket: BucketDevices, Key: string(deviceRecordKey(DeviceKey{CA: "ca", ID: "x"}, "s")), Value: []byte(`{`), Rev: 4}, // bad value
		Record{Bucket: BucketUsers, Key: "u@example.com", Value: []byte(`{"level":"high","source":"okta","event_id":"r","observed_at":"2026-09-14T08:00:00Z","received_at":"2026-09-14T08:00:00Z"}`), Rev: 5},
	)
	db := NewShared(failingBackend{}, Options{})
	l := db.NewLoad(len(recs))
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			var part []Record
			for i := w; i < len(recs); i += workers {
				part = append(part, recs[i])
			}
			l.Add(part)
		})
	}
	wg.Wait()
	l.Commit(5)

	if got := db.Stats().Devices; got != devices {
		t.Errorf("devices = %d, want %d", got, devices)
	}
	if got := db.Corrupt(); got != 2 {
		t.Errorf("corrupt = %d, want 2", got)
	}
	if db.Risk("u@example.com") == nil {
		t.Error("the user's risk record was not loaded")
	}
	for i := range devices {
		d := db.Device(DeviceKey{CA: "ca", ID: fmt.Sprintf("dev-%d", i)})
		if d == nil || len(d.Records) != 2 {
			t.Fatalf("device %d = %+v, want two records", i, d)
		}
		if a, z := d.Records[0], d.Records[1]; a.Source != "alpha" || a.Rev != 3 || a.Platform != "android" || z.Source != "zeta" || z.Rev != 2 {
			t.Fatalf("device %d records = %s@%d %s, %s@%d; want alpha@3 android, zeta@2", i, a.Source, a.Rev, a.Platform, z.Source, z.Rev)
		}
	}
	if got := db.Applied(); got != 5 {
		t.Errorf("applied = %d, want 5", got)
	}
}

// FuzzDeviceKey checks the load's key splitter against the store's.
func FuzzDeviceKey(f *testing.F) {
	f.Add(string(deviceRecordKey(DeviceKey{CA: "ivanti", ID: "dev-1"}, "uem")))
	f.Add("\x00\x00\x00")
	f.Add("\x80\x01" + string(make([]byte, 128)) + "\x00\x00")
	f.Add("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
	f.Fuzz(func(t *testing.T, k string) {
		var in interner
		key, source, ok := in.deviceKey(k)
		parts, err := splitKeyParts([]byte(k), 3)
		if ok != (err == nil) {
			t.Fatalf("deviceKey ok = %v, splitKeyParts err = %v", ok, err)
		}
		if ok && (key.CA != parts[0] || key.ID != parts[1] || source != parts[2]) {
			t.Fatalf("deviceKey = %q %q %q, want %q", key.CA, key.ID, source, parts)
		}
	})
}

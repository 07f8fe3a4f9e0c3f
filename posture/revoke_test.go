package posture

import (
	"context"
	"errors"
	"testing"
	"time"
)

func rev(id string, kind RevocationKind, subject string, before time.Time) RevocationEvent {
	r := Revocation{Kind: kind, Source: "okta", EventID: id, ObservedAt: before, Before: before}
	switch kind {
	case RevokeSession:
		r.Session = subject
	case RevokeUser:
		r.User = subject
	case RevokeDevice:
		r.Device = DeviceKey{CA: "ivanti", ID: subject}
	}
	return RevocationEvent{Revocation: r}
}

func TestApplyRevocations(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	db := openTest(t, dir, c)
	ctx := context.Background()
	ch, cancel := db.Subscribe(16)
	defer cancel()

	tests := []struct {
		name string
		ev   RevocationEvent
		want Outcome
	}{
		{"user", rev("e1", RevokeUser, "J.Doe@acme.example", t0), Applied},
		{"user duplicate", rev("e1", RevokeUser, "j.doe@acme.example", t0.Add(time.Hour)), Duplicate},
		{"user older", rev("e2", RevokeUser, "j.doe@acme.example", t0.Add(-time.Minute)), OutOfOrder},
		{"user same", rev("e3", RevokeUser, "j.doe@acme.example", t0), OutOfOrder},
		{"user later", rev("e4", RevokeUser, "j.doe@acme.example", t0.Add(time.Minute)), Applied},
		{"session", rev("e5", RevokeSession, "sid-1", t0), Applied},
		{"session again", rev("e6", RevokeSession, "sid-1", t0.Add(time.Minute)), OutOfOrder},
		{"device", rev("e7", RevokeDevice, "dev-1", t0), Applied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := db.ApplyRevocations(ctx, []RevocationEvent{tt.ev})
			if err != nil {
				t.Fatal(err)
			}
			if out[0] != tt.want {
				t.Errorf("outcome = %v, want %v", out[0], tt.want)
			}
		})
	}
	check := func(db *DB) {
		t.Helper()
		if got, want := db.UserRevokedBefore("j.doe@acme.example"), t0.Add(time.Minute); !got.Equal(want) {
			t.Errorf("UserRevokedBefore = %v, want %v", got, want)
		}
		if got := db.UserRevokedBefore("other@acme.example"); !got.IsZero() {
			t.Errorf("UserRevokedBefore(other) = %v, want zero", got)
		}
		if !db.SessionRevoked("sid-1") || db.SessionRevoked("sid-2") {
			t.Errorf("SessionRevoked(sid-1, sid-2) = %v, %v, want true, false", db.SessionRevoked("sid-1"), db.SessionRevoked("sid-2"))
		}
		if got := db.DeviceRevokedBefore(DeviceKey{CA: "ivanti", ID: "dev-1"}); !got.Equal(t0) {
			t.Errorf("DeviceRevokedBefore = %v, want %v", got, t0)
		}
	}
	check(db)
	var kinds []ChangeKind
	for len(ch) > 0 {
		c := <-ch
		kinds = append(kinds, c.Kind)
		if c.Kind != RevocationChanged {
			t.Errorf("change kind = %v, want RevocationChanged", c.Kind)
		}
	}
	if len(kinds) != 4 {
		t.Errorf("got %d changes, want 4", len(kinds))
	}
	n := 0
	db.RangeRevocations(func(*Revocation) bool { n++; return true })
	if n != 3 {
		t.Errorf("RangeRevocations saw %d records, want 3", n)
	}

	db.Close()
	db2 := openTest(t, dir, c)
	check(db2)

	// A session revocation is forgotten after RevocationTTL.
	c.Set(t0.Add(DefaultRevocationTTL + time.Hour))
	db2.Close()
	db3 := openTest(t, dir, c)
	if db3.SessionRevoked("sid-1") {
		t.Error("expired session revocation survived a reopen")
	}
	if db3.UserRevokedBefore("j.doe@acme.example").IsZero() {
		t.Error("user revocation was forgotten")
	}
}

func TestRevocationInvalid(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	for _, ev := range []RevocationEvent{
		{},
		rev("x", RevokeSession, "", t0),
		rev("", RevokeUser, "u", t0),
		rev("x", RevokeDevice, "", t0),
	} {
		if _, err := db.ApplyRevocations(context.Background(), []RevocationEvent{ev}); err == nil {
			t.Errorf("ApplyRevocations(%+v) succeeded", ev)
		}
	}
}

func TestRevocationLookupAllocs(t *testing.T) {
	db := openTest(t, t.TempDir(), &clock{t: t0})
	if _, err := db.ApplyRevocations(context.Background(), []RevocationEvent{rev("e", RevokeUser, "u", t0), rev("f", RevokeSession, "s", t0)}); err != nil {
		t.Fatal(err)
	}
	k := DeviceKey{CA: "ivanti", ID: "d"}
	allocs := testing.AllocsPerRun(100, func() {
		_ = db.SessionRevoked("s")
		_ = db.UserRevokedBefore("u")
		_ = db.DeviceRevokedBefore(k)
	})
	if allocs != 0 {
		t.Errorf("revocation lookups allocate %v times, want 0", allocs)
	}
}

func TestBatchCursorClearAndClearRisk(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	db := openTest(t, dir, c)
	ctx := context.Background()
	res, err := db.Apply(ctx, &Batch{
		Postures:    []PostureEvent{ev("p1", "ssf:compliance", t0, NotCompliant), ev("p2", "uem", t0, Compliant)},
		Risks:       []RiskEvent{{Risk: UserRisk{User: "U", Level: RiskHigh, Source: "okta", EventID: "r1", ObservedAt: t0}}},
		Revocations: []RevocationEvent{rev("v1", RevokeUser, "u", t0)},
		Cursor:      &Cursor{Name: "okta/logs", Value: "https://acme.okta.com/api/v1/logs?after=1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Postures) != 2 || len(res.Risks) != 1 || len(res.Revocations) != 1 || len(res.Clears) != 0 {
		t.Fatalf("result sizes = %d/%d/%d/%d, want 2/1/1/0", len(res.Postures), len(res.Risks), len(res.Revocations), len(res.Clears))
	}
	// A clear observed before the record is out of order, and so is one
	// in the same second (the objection is the more restrictive report); a
	// later one removes it.
	res, err = db.Apply(ctx, &Batch{Clears: []PostureClear{
		{Key: dev, Source: "ssf:compliance", EventID: "c0", ObservedAt: t0.Add(-time.Second)},
		{Key: dev, Source: "ssf:compliance", EventID: "ct", ObservedAt: t0.Add(999 * time.Millisecond)},
		{Key: dev, Source: "ssf:compliance", EventID: "c1", ObservedAt: t0.Add(time.Second)},
		{Key: dev, Source: "nobody", EventID: "c2", ObservedAt: t0.Add(time.Second)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Clears; got[0] != OutOfOrder || got[1] != OutOfOrder || got[2] != Applied || got[3] != OutOfOrder {
		t.Errorf("clear outcomes = %v, want out_of_order, out_of_order, applied, out_of_order", got)
	}
	if d := db.Device(dev); d == nil || len(d.Records) != 1 || d.Records[0].Source != "uem" {
		t.Errorf("device after clear = %+v, want only the uem record", d)
	}
	if o, err := db.ClearRisk(ctx, "u"); err != nil || o != Applied {
		t.Errorf("ClearRisk = %v, %v, want applied", o, err)
	}
	if db.Risk("u") != nil {
		t.Error("risk survived ClearRisk")
	}
	if o, err := db.Revoke(ctx, Revocation{Kind: RevokeSession, Session: "by-hand"}); err != nil || o != Applied {
		t.Errorf("Revoke = %v, %v, want applied", o, err)
	}
	db.Close()
	db2 := openTest(t, dir, c)
	if got := db2.Cursor("okta/logs"); got != "https://acme.okta.com/api/v1/logs?after=1" {
		t.Errorf("cursor after reopen = %q", got)
	}
	if db2.Risk("u") != nil || !db2.SessionRevoked("by-hand") {
		t.Error("cleared risk or manual revocation not persisted")
	}
	if d := db2.Device(dev); d == nil || len(d.Records) != 1 {
		t.Errorf("device after reopen = %+v, want one record", d)
	}
	if s := db2.Stats(); s.Devices != 1 || s.DeviceRecords != 1 || s.Users != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestBatchDedupTTL(t *testing.T) {
	c := &clock{t: t0}
	db := openTest(t, t.TempDir(), c)
	ctx := context.Background()
	b := func(id string) *Batch {
		return &Batch{Revocations: []RevocationEvent{rev(id, RevokeSession, "s-"+id, t0)}, DedupTTL: 7 * 24 * time.Hour}
	}
	if _, err := db.Apply(ctx, b("j1")); err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(3 * 24 * time.Hour)) // past the store's 24h, within the batch's 7 days
	res, err := db.Apply(ctx, b("j1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revocations[0] != Duplicate {
		t.Errorf("replay after 3 days = %v, want duplicate", res.Revocations[0])
	}
}

func TestBatchGuard(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	db := openTest(t, dir, c)
	ctx := context.Background()
	g := Guard{Issuer: "https://tx.example", ID: "jti-1"}
	first := &Batch{
		Revocations: []RevocationEvent{{Revocation: rev("jti-1", RevokeUser, "u", t0).Revocation, Guard: g}},
		DedupTTL:    7 * 24 * time.Hour,
	}
	res, err := db.Apply(ctx, first)
	if err != nil || res.Revocations[0] != Applied {
		t.Fatalf("first delivery = %v, %v, want applied", res.Revocations, err)
	}
	// The same guard with other writes (another event type reusing the
	// jti): every write is a duplicate, whatever its source and id.
	replay := &Batch{
		Postures: []PostureEvent{{Key: dev, Posture: ev("jti-1", "ssf:compliance", t0, NotCompliant).Posture, Guard: g}},
		Risks:    []RiskEvent{{Risk: UserRisk{User: "u", Level: RiskHigh, Source: "ssf", EventID: "jti-1#2", ObservedAt: t0}, Guard: g}},
		Guards:   []Guard{g},
	}
	res, err = db.Apply(ctx, replay)
	if err != nil {
		t.Fatal(err)
	}
	if res.Guards[0] != Duplicate || res.Postures[0] != Duplicate || res.Risks[0] != Duplicate {
		t.Errorf("replayed guard = %+v, want every outcome duplicate", res)
	}
	if db.Device(dev) != nil || db.Risk("u") != nil {
		t.Error("a replayed delivery was applied")
	}
	// The same id from another issuer is another delivery.
	other := Guard{Issuer: "https://other.example", ID: "jti-1"}
	res, err = db.Apply(ctx, &Batch{Guards: []Guard{other}, Risks: []RiskEvent{
		{Risk: UserRisk{User: "u", Level: RiskLow, Source: "ssf2", EventID: "jti-1", ObservedAt: t0}, Guard: other}}})
	if err != nil || res.Guards[0] != Applied || res.Risks[0] != Applied {
		t.Errorf("other issuer = %+v, %v, want applied", res, err)
	}
	// A guard recorded with no write is remembered, across a restart and
	// past the store's own 24 h window when the batch asked for 7 days.
	bare := Guard{Issuer: "https://tx.example", ID: "jti-2"}
	if res, err := db.Apply(ctx, &Batch{Guards: []Guard{bare}, DedupTTL: 7 * 24 * time.Hour}); err != nil || res.Guards[0] != Applied {
		t.Fatalf("bare guard = %+v, %v", res, err)
	}
	db.Close()
	c.Set(t0.Add(3 * 24 * time.Hour))
	db = openTest(t, dir, c)
	res, err = db.Apply(ctx, &Batch{Revocations: []RevocationEvent{{Revocation: rev("x", RevokeUser, "v", t0).Revocation, Guard: bare}}})
	if err != nil || res.Revocations[0] != Duplicate {
		t.Errorf("write under a guard recorded 3 days ago = %v, %v, want duplicate", res.Revocations, err)
	}
	if _, err := db.Apply(ctx, &Batch{Guards: []Guard{{ID: "x"}}}); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("guard without issuer: err = %v, want ErrInvalidEvent", err)
	}
}

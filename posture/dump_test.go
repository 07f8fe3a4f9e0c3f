package posture

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// fillForDump writes one record of every kind into the store in dir.
func fillForDump(t testing.TB, db *DB, now time.Time) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ApplyPosture(ctx, []PostureEvent{ev("evt-1", "uem", now, Compliant)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyRisk(ctx, []RiskEvent{{Risk: UserRisk{User: "alice@example.test", Level: RiskHigh, Source: "okta", EventID: "r-1", ObservedAt: now},
		Guard: Guard{Issuer: "https://tx.example.test", ID: "jti-1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyRevocations(ctx, []RevocationEvent{
		{Revocation: Revocation{Kind: RevokeUser, User: "bob@example.test", Before: now, Source: "admin", EventID: "a-1", ObservedAt: now}},
		{Revocation: Revocation{Kind: RevokeDevice, Device: DeviceKey{CA: "corp", ID: "d-9"}, Before: now, Source: "admin", EventID: "a-2", ObservedAt: now}},
		{Revocation: Revocation{Kind: RevokeSession, Session: "s-1", Before: now, Source: "oidc", EventID: "a-3", ObservedAt: now, ExpiresAt: now.Add(time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetCursor(ctx, "okta-poll", `{"after":"x y"}`); err != nil {
		t.Fatal(err)
	}
}

func exportDir(t testing.TB, dir string, now time.Time) string {
	t.Helper()
	var b bytes.Buffer
	w := NewDumpWriter(&b)
	if err := ExportDir(dir, now, w.Write); err != nil {
		t.Fatalf("ExportDir: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func importDir(t testing.TB, dir, dump string, now time.Time, force bool) (int, error) {
	t.Helper()
	r, err := NewDumpReader(strings.NewReader(dump))
	if err != nil {
		t.Fatalf("NewDumpReader: %v", err)
	}
	return ImportDir(dir, now, force, r.Next)
}

// TestDumpRoundTrip: an embedded store exported and imported into an
// empty directory exports the same lines, and opens with the same
// records; a second import is refused unless forced, and a forced one
// changes nothing.
func TestDumpRoundTrip(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	src := t.TempDir()
	db, err := Open(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fillForDump(t, db, now)
	db.Close()
	dump := exportDir(t, src, now)
	for _, want := range []string{`"bucket":"devices","key":["ivanti","dev-1","uem"]`, `"bucket":"users"`, `"key":["u","bob@example.test"]`,
		`"key":["d","corp","d-9"]`, `"key":["s","s-1"]`, `"bucket":"cursors","key":["okta-poll"],"value":"{\"after\":\"x y\"}"`,
		`"bucket":"dedup","key":["uem","evt-1"]`, `"key":["","guard","https://tx.example.test","jti-1"]`} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %s:\n%s", want, dump)
		}
	}

	dst := t.TempDir()
	n, err := importDir(t, dst, dump, now, false)
	if err != nil || n != strings.Count(dump, "\n")-1 {
		t.Fatalf("import = %d, %v; want every record", n, err)
	}
	if got := exportDir(t, dst, now); got != dump {
		t.Errorf("re-export differs:\n%s\nwant\n%s", got, dump)
	}
	if _, err := importDir(t, dst, dump, now, false); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("import into a store with records = %v, want ErrNotEmpty", err)
	}
	if _, err := importDir(t, dst, dump, now, true); err != nil {
		t.Errorf("forced import: %v", err)
	}
	if got := exportDir(t, dst, now); got != dump {
		t.Errorf("a forced second import changed the store:\n%s", got)
	}

	got, err := Open(dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if d := got.Device(dev); d == nil || d.Records[0].Compliance != Compliant {
		t.Errorf("imported device = %+v", d)
	}
	if r := got.Risk("alice@example.test"); r == nil || r.Level != RiskHigh {
		t.Errorf("imported risk = %+v", r)
	}
	if got.UserRevokedBefore("bob@example.test").IsZero() || !got.SessionRevoked("s-1") {
		t.Error("imported revocations are not in force")
	}
	if c := got.Cursor("okta-poll"); c != `{"after":"x y"}` {
		t.Errorf("imported cursor = %q", c)
	}
	// The imported event ids are still remembered.
	if out := apply(t, got, ev("evt-1", "uem", now.Add(time.Hour), NotCompliant)); out[0] != Duplicate {
		t.Errorf("a remembered event id after import: %v, want duplicate", out[0])
	}
}

func TestParseDumpLine(t *testing.T) {
	rev := `{"kind":"user","user":"bob@example.test","before":"2026-01-01T00:00:00Z","source":"admin","event_id":"a","observed_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z"}`
	tests := []struct {
		name, line string
		ok         bool
	}{
		{"cursor", `{"bucket":"cursors","key":["c"],"value":"v"}`, true},
		{"dedup", `{"bucket":"dedup","key":["uem","e"],"expires":"2030-01-01T00:00:00Z"}`, true},
		{"revocation", `{"bucket":"revocations","key":["u","bob@example.test"],"value":` + rev + `}`, true},
		{"revocation under another key", `{"bucket":"revocations","key":["u","eve@example.test"],"value":` + rev + `}`, false},
		{"unknown bucket", `{"bucket":"meta","key":["schema"],"value":"1"}`, false},
		{"unknown field", `{"bucket":"cursors","key":["c"],"value":"v","x":1}`, false},
		{"device key of two parts", `{"bucket":"devices","key":["ca","id"],"value":{}}`, false},
		{"device value not a record", `{"bucket":"devices","key":["ca","id","uem"],"value":[1]}`, false},
		{"dedup without expiry", `{"bucket":"dedup","key":["uem","e"]}`, false},
		{"cursor not a string", `{"bucket":"cursors","key":["c"],"value":5}`, false},
		{"user with an expiry", `{"bucket":"users","key":["u"],"value":{},"expires":"2030-01-01T00:00:00Z"}`, false},
		{"two objects", `{"bucket":"cursors","key":["c"],"value":"v"}{}`, false},
		{"not JSON", `bucket=cursors`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDumpLine([]byte(tt.line)); (err == nil) != tt.ok {
				t.Errorf("ParseDumpLine(%s) = %v, want ok %v", tt.line, err, tt.ok)
			}
		})
	}
	for _, bad := range []string{"", "{}\n", `{"format":"portcullis-store","version":2}` + "\n", `{"format":"other","version":1}` + "\n"} {
		if _, err := NewDumpReader(strings.NewReader(bad)); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
	r, _ := NewDumpReader(strings.NewReader(`{"format":"portcullis-store","version":1}` + "\n\n" + `{"bucket":"x"}` + "\n"))
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad line error = %v, want it to name line 3", err)
	}
}

// FuzzParseDumpLine: whatever a dump line holds, parsing never panics,
// and what it accepts writes back to a line that parses to the same entry.
func FuzzParseDumpLine(f *testing.F) {
	f.Add([]byte(`{"bucket":"cursors","key":["c"],"value":"v"}`))
	f.Add([]byte(`{"bucket":"dedup","key":["","guard","iss","jti"],"expires":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"bucket":"devices","key":["ca","id","uem"],"value":{"event_id":"e","managed":true,"compliance":"compliant","observed_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"bucket":"users","key":["u"],"value":{"level":"high"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseDumpLine(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := NewDumpWriter(&buf)
		if err := w.Write(e); err != nil {
			return // a value the format cannot carry exactly is refused on export
		}
		w.Flush()
		r, err := NewDumpReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := r.Next()
		if err != nil {
			t.Fatalf("re-reading %q: %v", buf.String(), err)
		}
		if e2.Bucket != e.Bucket || e2.Key != e.Key || !e2.Expires.Equal(e.Expires) {
			t.Fatalf("round trip changed %+v into %+v", e, e2)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("more than one entry: %v", err)
		}
	})
}

package redis

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis/posture"
)

// dumpOf returns a dump's record lines, sorted, with dedup expiries cut
// to the minute (Redis keeps a time to live, not the instant).
func dumpOf(t *testing.T, dump string) []string {
	t.Helper()
	r, err := posture.NewDumpReader(strings.NewReader(dump))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		e.Expires = e.Expires.Truncate(time.Minute)
		var b bytes.Buffer
		w := posture.NewDumpWriter(&b)
		w.Write(e)
		w.Flush()
		lines = append(lines, strings.SplitN(b.String(), "\n", 2)[1])
	}
	slices.Sort(lines)
	return lines
}

// TestExportImportThroughRedis moves an embedded store to Redis and back:
// the second embedded store exports what the first did, a running
// replica installs the import as it goes, and an import into a Redis
// that holds records is refused unless forced.
func TestExportImportThroughRedis(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	// Expiries far from a minute boundary, so cutting them compares.
	now := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	src := t.TempDir()
	db, err := posture.Open(src, posture.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []posture.Compliance{posture.Compliant, posture.NotCompliant} {
		p := postureEvent("evt-"+string(rune('a'+i)), now, c)
		p.Key.ID = "dev-" + string(rune('a'+i))
		if _, err := db.ApplyPosture(ctx, []posture.PostureEvent{p}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ApplyRevocations(ctx, []posture.RevocationEvent{{Revocation: posture.Revocation{Kind: posture.RevokeUser,
		User: "bob@example.test", Before: now, Source: "admin", EventID: "a-1", ObservedAt: now}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetCursor(ctx, "okta", "cursor-1"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	var embedded bytes.Buffer
	w := posture.NewDumpWriter(&embedded)
	if err := posture.ExportDir(src, now, w.Write); err != nil {
		t.Fatal(err)
	}
	w.Flush()

	running := newReplica(t, srv, Config{})
	waitLoaded(t, running)
	store := newReplica(t, srv, Config{})
	importInto := func(force bool) (int, error) {
		r, err := posture.NewDumpReader(bytes.NewReader(embedded.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		return store.Import(ctx, force, r.Next)
	}
	n, err := importInto(false)
	if want := strings.Count(embedded.String(), "\n") - 1; err != nil || n != want {
		t.Fatalf("import into Redis = %d, %v; want %d records", n, err, want)
	}
	waitFor(t, "the running replica to install the import", func() bool {
		d := running.DB().Device(posture.DeviceKey{CA: dev.CA, ID: "dev-b"})
		return d != nil && d.Records[0].Compliance == posture.NotCompliant && !running.DB().UserRevokedBefore("bob@example.test").IsZero()
	})
	if _, err := importInto(false); !errors.Is(err, posture.ErrNotEmpty) {
		t.Errorf("import into a Redis with records = %v, want ErrNotEmpty", err)
	}
	if _, err := importInto(true); err != nil {
		t.Errorf("forced import: %v", err)
	}

	var fromRedis bytes.Buffer
	w = posture.NewDumpWriter(&fromRedis)
	if err := store.Export(ctx, w.Write); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	dst := t.TempDir()
	r, _ := posture.NewDumpReader(bytes.NewReader(fromRedis.Bytes()))
	if _, err := posture.ImportDir(dst, now, false, r.Next); err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	w = posture.NewDumpWriter(&back)
	if err := posture.ExportDir(dst, now, w.Write); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got, want := dumpOf(t, back.String()), dumpOf(t, embedded.String()); !slices.Equal(got, want) {
		t.Errorf("embedded → Redis → embedded changed the records:\n%s\nwant\n%s", strings.Join(got, ""), strings.Join(want, ""))
	}
}

package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreExportImportCLI moves a stopped gateway's embedded store to
// Redis with `portcullis store export|import`, serves from Redis, and
// moves it back.
func TestStoreExportImportCLI(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	if out, code := run(t, binPath, "posture", "set", "--config", e.cfgPath, "--device", e.dev1ID); code != 0 {
		t.Fatalf("posture set: %d %s", code, out)
	}
	dump := filepath.Join(e.dir, "store.jsonl")
	if _, code := run(t, binPath, "store", "export", "--config", e.cfgPath, "--out", dump); code != 0 {
		t.Fatalf("export from the embedded store: %d", code)
	}
	rs := replicaEnvs(t, e, 1, rd.addr())
	r := rs[0]
	for _, force := range []bool{false, true} {
		args := []string{"store", "import", "--config", r.cfgPath, "--to", "redis", "--in", dump}
		if force {
			args = append(args, "--force")
		}
		if out, code := run(t, binPath, args...); code != 0 || !strings.Contains(out, "imported 2 records") {
			t.Fatalf("import into Redis (force %v): %d %q", force, code, out)
		}
	}
	// Without --force, a second import is refused.
	if _, code := run(t, binPath, "store", "import", "--config", r.cfgPath, "--in", dump); code == 0 {
		t.Error("an import into a Redis that holds records was not refused")
	}
	// A replica on Redis, with an empty state.dir, serves the device.
	r.start()
	r.waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)

	back := filepath.Join(e.dir, "back.jsonl")
	if _, code := run(t, binPath, "store", "export", "--config", r.cfgPath, "--out", back); code != 0 {
		t.Fatalf("export from Redis: %d", code)
	}
	a, _ := os.ReadFile(dump)
	b, _ := os.ReadFile(back)
	if !strings.Contains(string(b), e.dev1ID) || strings.Count(string(a), "\n") != strings.Count(string(b), "\n") {
		t.Errorf("export from Redis:\n%s\nwant the records of\n%s", b, a)
	}
	fresh := filepath.Join(e.dir, "fresh.yaml")
	cfg, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(fresh, []byte(strings.Replace(string(cfg), "state: {dir: state}", "state: {dir: state-back}", 1)), 0o600)
	if out, code := run(t, binPath, "store", "import", "--config", fresh, "--in", back); code != 0 || !strings.Contains(out, "imported 2 records into the embedded store") {
		t.Fatalf("import into a new embedded store: %d %q", code, out)
	}
}

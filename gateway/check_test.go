package gateway

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCheckShippedConfigs runs check on every example configuration; each
// must pass, and checking writes nothing next to it.
func TestCheckShippedConfigs(t *testing.T) {
	matches, _ := filepath.Glob("../configs/*.yaml")
	if len(matches) == 0 {
		t.Fatal("no configs shipped")
	}
	for _, m := range matches {
		t.Run(filepath.Base(m), func(t *testing.T) {
			// Copied into a fresh tree of the same shape, so that paths
			// such as ../data resolve to an empty directory.
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "configs"), 0o700)
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "configs", filepath.Base(m))
			os.WriteFile(path, b, 0o600)
			if _, errs := Check(path); len(errs) > 0 {
				t.Errorf("check %s: %v", m, errs)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("check wrote beside the configuration: %v", entries)
			}
		})
	}
}

// TestCheckStartsNothing: check builds what serve builds, but the demo
// upstream, the listeners and every background loop start only in Run.
func TestCheckStartsNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(`dev: {dir: dev}
resources:
  - name: demo
    hosts: ["*"]
    upstream: builtin:echo
    policy: {device: {certificate: "off"}}
`), 0o600)
	if _, errs := Check(path); len(errs) > 0 {
		t.Fatal(errs)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"net/http.(*Server).Serve", "portcullis/gateway.(*Gateway).echoAddr"} {
		if strings.Contains(stacks, fn) {
			t.Errorf("a goroutine runs %s after Check:\n%s", fn, stacks)
		}
	}
}

package test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown: SIGTERM lets an in-flight request finish, then the
// process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	c := e.client(e.dev1Cert, e.dev1Key, true)
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := c.Get(e.url("/delay"))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	// Wait until the gateway has the request in flight.
	deadline := time.Now().Add(5 * time.Second)
	for g.metric("portcullis_live_requests") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("request never in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.signal(syscall.SIGTERM)
	r := <-got
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request during shutdown: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after draining")
	}
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(g.logs(), `"msg":"stopped"`) {
		t.Errorf("no stop log")
	}
}

// TestReloadOnFileChange: editing the file is enough; no signal needed.
func TestReloadOnFileChange(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	before := g.metric(`portcullis_config_reloads_total{result="ok"}`)
	e.writeConfig(`  - name: added
    hosts: [localhost]
    paths: [/added]
    upstream: ` + e.upstream + `
    policy: {device: {certificate: "off"}}
`)
	g.waitLog("configuration reloaded")
	resp, err := e.client("", "", true).Get(e.url("/added"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("resource added by editing the file: %d", resp.StatusCode)
	}
	if after := g.metric(`portcullis_config_reloads_total{result="ok"}`); after == before {
		t.Errorf("reload counter did not move (%s)", after)
	}
}

// TestAuditFileReopenedOnSIGHUP: logrotate renames the decision log and
// sends SIGHUP; the decisions before it stay in the renamed file and the
// ones after it go to a new file of the old name.
func TestAuditFileReopenedOnSIGHUP(t *testing.T) {
	e := newEnv(t)
	e.writeConfig("audit: {output: decisions.log}\n")
	g := e.start()
	get := func(path string) {
		t.Helper()
		resp, err := e.client("", "", false).Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	log := filepath.Join(e.dir, "decisions.log")
	waitContains := func(file, s string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if b, _ := os.ReadFile(file); strings.Contains(string(b), s) {
				return
			}
		}
		b, _ := os.ReadFile(file)
		t.Fatalf("%s never had %q:\n%s", filepath.Base(file), s, b)
	}
	get("/public/before-rotation")
	waitContains(log, `"path":"/public/before-rotation"`)
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog("audit output reopened")
	get("/public/after-rotation")
	waitContains(log, `"path":"/public/after-rotation"`)
	if b, _ := os.ReadFile(log); strings.Contains(string(b), "before-rotation") {
		t.Error("the new file has a record from before the rotation")
	}
	if b, _ := os.ReadFile(log + ".1"); strings.Contains(string(b), "after-rotation") {
		t.Error("a record from after the rotation went to the rotated file")
	}
}

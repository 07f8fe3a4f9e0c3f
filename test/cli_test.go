package test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCheckListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte(`listen:
  - address: nope
    client_auth: sometimes
admin: {listen: "127.0.0.1:0"}
tls:
  certificates: [{cert: missing.pem, key: missing.key}]
resourcez: []
resources:
  - name: app
    hosts: [app.example.test]
    upstream: ftp://x
    policy:
      device: {max_threat: severe}
`), 0o600)
	cmd := exec.Command(binPath, "check", "--config", cfg)
	b, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("check exit %d, want 1:\n%s", code, b)
	}
	for _, want := range []string{
		cfg + ":2:14: listen[0].address:",
		cfg + ":3:18: listen[0].client_auth:",
		cfg + `:7:1: resourcez: unknown key (did you mean "resources"?)`,
		cfg + ":11:15: resources[0].upstream:",
		cfg + ":13:28: resources[0].policy.device.max_threat:",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("check output lacks %q:\n%s", want, b)
		}
	}

	// A policy with a CEL error is reported with the line of its key.
	os.WriteFile(cfg, []byte(`tls: {certificates: [{cert: missing.pem, key: missing.key}]}
resources:
  - name: app
    hosts: ["*"]
    upstream: http://127.0.0.1:1
    policy:
      device: {certificate: "off"}
      when: 'request.method =='
`), 0o600)
	b, _ = exec.Command(binPath, "check", "--config", cfg).CombinedOutput()
	for _, want := range []string{cfg + ":8:13: resources[0].policy.when:", cfg + ":1:22: tls.certificates[0]"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("check output lacks %q:\n%s", want, b)
		}
	}
}

func TestCheckAcceptsShippedConfigs(t *testing.T) {
	matches, _ := filepath.Glob("../configs/*.yaml")
	if len(matches) == 0 {
		t.Fatal("no configs shipped")
	}
	for _, m := range matches {
		if out, code := run(t, binPath, "check", "--config", m); code != 0 || !strings.Contains(out, "OK") {
			t.Errorf("check %s: exit %d %s", m, code, out)
		}
	}
}

func TestExplain(t *testing.T) {
	cfg := "../configs/quickstart.yaml"
	out, code := run(t, binPath, "explain", "--config", cfg, "--resource", "demo")
	if code != 3 || !strings.Contains(out, "device.certificate_missing") || !strings.Contains(out, "rule:     policy.device.certificate") {
		t.Errorf("explain without device: exit %d\n%s", code, out)
	}
	out, code = run(t, binPath, "explain", "--config", cfg, "--resource", "demo", "--device", "d1", "--compliant", "false")
	if code != 3 || !strings.Contains(out, "device.not_compliant") || !strings.Contains(out, "remediation: https://") {
		t.Errorf("explain non-compliant: exit %d\n%s", code, out)
	}
	out, code = run(t, binPath, "explain", "--config", cfg, "--resource", "demo", "--device", "d1", "--compliant", "true", "--user", "a@b", "--risk", "high")
	if code != 3 || !strings.Contains(out, "user.risk_too_high") {
		t.Errorf("explain risky user: exit %d\n%s", code, out)
	}
	out, code = run(t, binPath, "explain", "--config", cfg, "--resource", "demo", "--device", "d1", "--compliant", "true")
	if code != 3 || !strings.Contains(out, "user.login_required") {
		t.Errorf("explain with no user where the policy limits user risk: exit %d\n%s", code, out)
	}
	out, code = run(t, binPath, "explain", "--config", cfg, "--resource", "demo", "--device", "d1", "--compliant", "true", "--user", "a@b")
	if code != 0 || !strings.Contains(out, "verdict:  allow") {
		t.Errorf("explain allowed: exit %d\n%s", code, out)
	}
}

// TestQuickstart runs the shipped quickstart configuration (on free ports,
// in a temporary directory) and then the exact commands serve prints: the
// allowed request, the denied one, and the feed post that flips the first.
func TestQuickstart(t *testing.T) {
	requirePeer(t, "curl")
	bash := requirePeer(t, "bash")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "configs"), 0o700)
	src, err := os.ReadFile("../configs/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	port, admin := freePort(t), freePort(t)
	cfg := strings.ReplaceAll(string(src), "127.0.0.1:8443", "127.0.0.1:"+itoa(port))
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:9090", "127.0.0.1:"+itoa(admin))
	os.WriteFile(filepath.Join(dir, "configs", "quickstart.yaml"), []byte(cfg), 0o600)

	cmd := exec.Command(binPath, "serve", "--config", "configs/quickstart.yaml")
	cmd.Dir = dir
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()

	var printed []string
	sc := bufio.NewScanner(stdout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			printed = append(printed, sc.Text())
			if strings.HasPrefix(sc.Text(), "Metrics:") {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve printed no next steps in 30s")
	}
	for _, f := range []string{"data/dev/ca.pem", "data/dev/device.pem", "data/dev/device.key", "data/dev/device.id", "data/dev/feed.secret"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("quickstart did not create %s", f)
		}
	}
	if s, _ := os.ReadFile(filepath.Join(dir, "data/dev/feed.secret")); !strings.HasPrefix(string(s), "whsec_") {
		t.Errorf("feed.secret = %q, want whsec_...", s)
	}
	// Collect the commands: lines after a "# N." comment, joined over "\".
	var cmds []string
	for i := 0; i < len(printed); i++ {
		l := strings.TrimSpace(printed[i])
		if !strings.HasPrefix(l, "curl ") && !strings.HasPrefix(l, "go run ") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(printed) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(printed[i])
		}
		cmds = append(cmds, strings.Replace(l, "go run ./cmd/portcullis", binPath, 1))
	}
	if len(cmds) != 3 {
		t.Fatalf("want 3 commands, got %d:\n%s", len(cmds), strings.Join(printed, "\n"))
	}
	sh := func(c string) string {
		out, _ := run(t, bash, "-c", "cd "+dir+" && "+c+` -s -o /dev/stderr -w '%{http_code}' 2>/dev/null || true`)
		return out
	}
	status := regexp.MustCompile(`\d{3}$`)
	if got := status.FindString(sh(cmds[0])); got != "200" {
		t.Errorf("command 1 (allowed): status %q", got)
	}
	if got := status.FindString(sh(cmds[1])); got != "401" {
		t.Errorf("command 2 (no certificate): status %q", got)
	}
	if out, code := run(t, bash, "-c", "cd "+dir+" && "+cmds[2]); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("command 3 (feed post): exit %d %s", code, out)
	}
	if got := status.FindString(sh(cmds[0])); got != "403" {
		t.Errorf("command 1 after the feed post: status %q, want 403", got)
	}
}

func itoa(i int) string { return strconvItoa(i) }

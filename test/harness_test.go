package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the portcullis binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "portcullis")
	build := exec.Command("go", "build", "-o", binPath, "portcullis/cmd/portcullis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building portcullis:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requirePeer returns the path of an external program the test drives,
// skipping the test when it is missing, unless CI is set, where a missing
// peer is a failure.
func requirePeer(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	missingPeer(t, "%s is not installed (.ci/run installs it)", name)
	return ""
}

// missingPeer ends a test whose real peer cannot run here: a skip on a
// developer's machine, a failure when CI is set, since a skipped test
// proves nothing.
func missingPeer(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// freePort returns a loopback port that is free for both TCP and UDP at
// the time of the call.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// gatewayProc is a running portcullis binary.
type gatewayProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	cfg    string
	admin  string
	logMu  sync.Mutex
	logBuf bytes.Buffer
	done   chan struct{}
}

// startGateway runs `portcullis serve --config cfg` and waits until its
// admin listener reports ready.
func startGateway(t testing.TB, cfg, adminAddr string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{t: t, cfg: cfg, admin: adminAddr, done: make(chan struct{})}
	g.cmd = exec.Command(binPath, "serve", "--config", cfg)
	g.cmd.Stdout = &lockedWriter{g: g}
	g.cmd.Stderr = &lockedWriter{g: g}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway output:\n%s", g.logs())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("gateway exited during start:\n%s", g.logs())
		default:
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway not ready in 30s:\n%s", g.logs())
	return nil
}

type lockedWriter struct{ g *gatewayProc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.g.logMu.Lock()
	defer w.g.logMu.Unlock()
	return w.g.logBuf.Write(b)
}

func (g *gatewayProc) logs() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.logBuf.String()
}

// waitLog waits until the gateway's output contains s.
func (g *gatewayProc) waitLog(s string) {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(g.logs(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("gateway never logged %q:\n%s", s, g.logs())
}

func (g *gatewayProc) signal(sig os.Signal) {
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (g *gatewayProc) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
}

// metric returns the value of one sample line of the admin /metrics page,
// for example `portcullis_config_reloads_total{result="error"}`.
func (g *gatewayProc) metric(name string) string {
	g.t.Helper()
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// waitSweeps waits up to 10 s for n more re-evaluation passes than have
// run so far.
func (g *gatewayProc) waitSweeps(n int) {
	g.t.Helper()
	count := func() int {
		v, _ := strconv.ParseFloat(g.metric("portcullis_reevaluation_sweeps_total"), 64)
		return int(v)
	}
	want := count() + n
	deadline := time.Now().Add(10 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			g.t.Fatalf("fewer than %d re-evaluation passes in 10 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs an external command and returns its stdout, failing the test
// when it cannot start (a non-zero exit is returned, not fatal).
func run(t testing.TB, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
		if code != 0 && errb.Len() > 0 {
			t.Logf("%s stderr: %s", name, strings.TrimSpace(errb.String()))
		}
	}
	return out.String(), code
}

// poolFrom reads a PEM bundle into a pool.
func poolFrom(t testing.TB, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificates", path)
	}
	return p
}

func clientCert(t testing.TB, cert, key string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readJSON(t testing.TB, r io.Reader, v any) {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
}

func strconvItoa(i int) string { return fmt.Sprint(i) }

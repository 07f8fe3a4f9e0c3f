package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// redisPeer is a redis-server on a free loopback port, with append-only
// persistence (fsync on every write) in a temporary directory.
type redisPeer struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedisPeer(t testing.TB) *redisPeer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		missingPeer(t, "redis-server not installed: %v", err)
	}
	r := &redisPeer{t: t, dir: t.TempDir(), port: freePort(t)}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisPeer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisPeer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
		r.cmd.Wait()
		once.Do(func() { close(ready) })
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		r.t.Fatal("redis-server did not start")
	}
	c, err := net.DialTimeout("tcp", r.addr(), 5*time.Second)
	if err != nil {
		r.t.Fatalf("redis-server not listening: %v", err)
	}
	c.Close()
}

func (r *redisPeer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		<-r.done
		r.cmd = nil
	}
}

// replicaEnvs returns n gateways' environments sharing e's certificates,
// feed secret and upstream, each with its own ports and state directory,
// all on the Redis store at addr.
func replicaEnvs(t testing.TB, e *env, n int, addr string) []*env {
	t.Helper()
	base, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []*env
	for i := range n {
		r := *e
		r.port = freePort(t)
		r.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		r.cfgPath = filepath.Join(e.dir, fmt.Sprintf("replica%d.yaml", i+1))
		cfg := string(base)
		cfg = strings.Replace(cfg, fmt.Sprintf("127.0.0.1:%d", e.port), fmt.Sprintf("127.0.0.1:%d", r.port), 1)
		cfg = strings.Replace(cfg, e.admin, r.admin, 1)
		cfg = strings.Replace(cfg, "state: {dir: state}",
			fmt.Sprintf("state: {dir: state%d, redis: {addrs: [%q]}}", i+1, addr), 1)
		if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, &r)
	}
	return out
}

// openWS opens a websocket to /ws with the device certificate and
// returns it with a channel closed when the gateway ends it.
func (e *env) openWS(t *testing.T, cert, key string) <-chan struct{} {
	t.Helper()
	return e.openWSAt(t, cert, key, "/ws")
}

// openWSAt is openWS on another path.
func (e *env) openWSAt(t *testing.T, cert, key, path string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d%s", e.port, path),
		&websocket.DialOptions{HTTPClient: e.client(cert, key, false)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}()
	return closed
}

// statusOf returns the status of GET path with the device certificate.
func (e *env) statusOf(t *testing.T, cert, key, path string) int {
	t.Helper()
	resp, err := e.client(cert, key, false).Get(e.url(path))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus waits, bounded, for GET path to answer want.
func (e *env) waitStatus(t *testing.T, cert, key, path string, want int) {
	t.Helper()
	got := 0
	for range 100 {
		if got = e.statusOf(t, cert, key, path); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s on :%d = %d, want %d", path, e.port, got, want)
}

// waitAllClosed waits for every channel, bounded, and returns how long
// the last one took.
func waitAllClosed(t *testing.T, start time.Time, what string, chs ...<-chan struct{}) time.Duration {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i, ch := range chs {
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%s: websocket %d still open", what, i)
		}
	}
	return time.Since(start)
}

func TestReplicasShareSignalsThroughRedis(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	rs := replicaEnvs(t, e, 3, rd.addr())
	for _, r := range rs {
		r.start()
	}
	// A posture event posted to replica 1 admits the device on 2 and 3.
	rs[0].setCompliant(e.dev1ID, true)
	rs[0].setCompliant(e.dev2ID, true)
	for _, r := range rs[1:] {
		r.waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)
		r.waitStatus(t, e.dev2Cert, e.dev2Key, "/", 200)
	}

	// A non-compliant report posted to replica 1 closes the device's
	// websockets on replicas 2 and 3.
	ws := []<-chan struct{}{
		rs[1].openWS(t, e.dev1Cert, e.dev1Key), rs[2].openWS(t, e.dev1Cert, e.dev1Key),
	}
	bob := []<-chan struct{}{rs[1].openWS(t, e.dev2Cert, e.dev2Key), rs[2].openWS(t, e.dev2Cert, e.dev2Key)}
	// Non-compliant wins a tie with the earlier report, so it needs no
	// later second (setCompliant would wait for one).
	id := "evt-" + uuid4()
	start := time.Now()
	if code, b := postTo(t, rs[0], id, postureEvent(id, e.dev1ID, false, start), start, e.feedKey); code != 200 {
		t.Fatalf("feed post = %d %s", code, b)
	}
	took := waitAllClosed(t, start, "posture", ws...)
	t.Logf("posture signal on replica 1 → last websocket closed on replicas 2 and 3: %v", took)
	for i, ch := range bob {
		select {
		case <-ch:
			t.Errorf("bob's websocket %d was closed too", i)
		default:
		}
	}

	// A device revocation through replica 1's admin API closes bob's.
	start = time.Now()
	req, _ := http.NewRequest(http.MethodPost, "http://"+rs[0].admin+"/v1/revoke",
		strings.NewReader(fmt.Sprintf(`{"ca":"corp","device":%q,"reason":"lost"}`, e.dev2ID)))
	tok, _ := os.ReadFile(e.adminToken)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke = %d", resp.StatusCode)
	}
	took = waitAllClosed(t, start, "revocation", bob...)
	t.Logf("revocation on replica 1 → last websocket closed on replicas 2 and 3: %v", took)
	rs[2].waitStatus(t, e.dev2Cert, e.dev2Key, "/", 403)

	// The same delivery posted to replicas 1 and 2 at once is applied once.
	id = "evt-" + uuid4()
	body := postureEvent(id, e.dev1ID, true, time.Now())
	ts := time.Now()
	replies := make([]string, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b := postTo(t, rs[i], id, body, ts, e.feedKey)
			replies[i] = fmt.Sprintf("%d %s", code, b)
		}()
	}
	wg.Wait()
	// One replica processes it (applied, or out of order when it ties
	// with the stored report and is less restrictive); the other finds
	// it a duplicate.
	processed, duplicate := 0, 0
	for _, r := range replies {
		var rep struct {
			Applied    int `json:"applied"`
			Duplicate  int `json:"duplicate"`
			OutOfOrder int `json:"out_of_order"`
		}
		if !strings.HasPrefix(r, "200 ") || json.Unmarshal([]byte(r[4:]), &rep) != nil {
			t.Fatalf("reply %q, want 200 with a JSON body", r)
		}
		processed += rep.Applied + rep.OutOfOrder
		duplicate += rep.Duplicate
	}
	if processed != 1 || duplicate != 1 {
		t.Errorf("processed %d times and %d duplicates, want 1 and 1: %q", processed, duplicate, replies)
	}

	// /readyz reports the shared store.
	resp, err = http.Get("http://" + rs[1].admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var rz struct {
		Store struct{ Kind, State string }
	}
	json.NewDecoder(resp.Body).Decode(&rz)
	resp.Body.Close()
	if rz.Store.Kind != "redis" || rz.Store.State != "ok" {
		t.Errorf("readyz store = %+v", rz.Store)
	}
}

// postTo posts a signed uem feed delivery to one replica.
func postTo(t *testing.T, e *env, id string, body []byte, ts time.Time, key []byte) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	req.Header.Set("webhook-signature", signFeed(key, id, ts, body))
	resp, err := e.client("", "", false).Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func TestReplicaCutOffFromRedis(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	rs := replicaEnvs(t, e, 1, rd.addr())
	r := rs[0]
	r.start()
	r.setCompliant(e.dev1ID, true)
	r.waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)

	rd.kill()
	// Requests are still decided from the copy; feeds answer 503 with
	// Retry-After, since nothing can be stored.
	if got := r.statusOf(t, e.dev1Cert, e.dev1Key, "/"); got != 200 {
		t.Errorf("request with Redis down = %d, want 200 from the local copy", got)
	}
	id := "evt-" + uuid4()
	now := time.Now()
	body := postureEvent(id, e.dev1ID, false, now)
	code, _ := postTo(t, r, id, body, now, e.feedKey)
	if code != 503 {
		t.Errorf("feed with Redis down = %d, want 503", code)
	}

	// Redis back: the sender's retry is stored and applied.
	rd.start()
	for range 100 {
		code, _ := postTo(t, r, id, body, now, e.feedKey)
		if code == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.waitStatus(t, e.dev1Cert, e.dev1Key, "/", 403)
}

func TestReplicaStartingWithRedisDownDeniesPosture(t *testing.T) {
	e := newEnv(t)
	rs := replicaEnvs(t, e, 1, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	g := &gatewayProc{t: t, cfg: rs[0].cfgPath, admin: rs[0].admin, done: make(chan struct{})}
	g.cmd = exec.Command(binPath, "serve", "--config", rs[0].cfgPath)
	g.cmd.Stdout = &lockedWriter{g: g}
	g.cmd.Stderr = &lockedWriter{g: g}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.stop)
	g.waitLog(`"msg":"shared store unreachable`)
	// Not ready, and no posture: the app resource denies.
	resp, err := http.Get("http://" + rs[0].admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Error("ready with no copy of the shared store")
	}
	if got := rs[0].statusOf(t, e.dev1Cert, e.dev1Key, "/"); got == 200 {
		t.Error("a resource that needs posture was served with no copy")
	}
}

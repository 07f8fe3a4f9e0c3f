package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRedisKilledDuringFeedBurst: Redis (append-only, fsync always) is
// killed while eight senders post a burst of posture events to a replica.
// Every event the replica acknowledged is in Redis after it restarts, and
// every event it refused (503) is stored when the sender retries.
func TestRedisKilledDuringFeedBurst(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	r := replicaEnvs(t, e, 1, rd.addr())[0]
	r.start()

	const senders, perSender = 8, 40
	var (
		mu      sync.Mutex
		acked   []string // device ids whose event got a 200
		refused [][]byte // bodies to retry
		ids     []string
	)
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				dev := fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", s, i)
				id := "evt-" + uuid4()
				now := time.Now()
				body := postureEvent(id, dev, true, now)
				code, _ := postTo(t, r, id, body, now, e.feedKey)
				mu.Lock()
				if code == 200 {
					acked = append(acked, dev)
					if len(acked) == senders*perSender/4 {
						once.Do(func() { close(killed) })
					}
				} else {
					refused, ids = append(refused, body), append(ids, id)
				}
				mu.Unlock()
			}
		}()
	}
	<-killed
	rd.kill()
	wg.Wait()
	t.Logf("%d events acknowledged, %d refused while Redis was down", len(acked), len(refused))
	if len(refused) == 0 {
		t.Fatal("no event was refused: Redis was killed after the burst")
	}

	rd.start()
	for i, body := range refused {
		ok := false
		for range 100 {
			now := time.Now()
			if code, _ := postTo(t, r, ids[i], body, now, e.feedKey); code == 200 {
				ok = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !ok {
			t.Fatalf("the retry of %s was never stored", ids[i])
		}
	}

	dump := filepath.Join(e.dir, "after.jsonl")
	if _, code := run(t, binPath, "store", "export", "--config", r.cfgPath, "--out", dump); code != 0 {
		t.Fatalf("export: %d", code)
	}
	b, _ := os.ReadFile(dump)
	missing := 0
	for _, dev := range acked {
		if !strings.Contains(string(b), `"key":["corp","`+dev+`","uem"]`) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged events are not in Redis after its restart", missing, len(acked))
	}
	if got := strings.Count(string(b), `"bucket":"devices"`); got != senders*perSender {
		t.Errorf("%d device records after the retries, want %d", got, senders*perSender)
	}
}

// cutProxy forwards TCP connections to a backend until cut: then it
// closes every connection and refuses new ones, as a network partition
// would, until restored.
type cutProxy struct {
	t       *testing.T
	addr    string
	backend string
	mu      sync.Mutex // guards ln and conns
	ln      net.Listener
	conns   []net.Conn
}

func newCutProxy(t *testing.T, backend string) *cutProxy {
	p := &cutProxy{t: t, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), backend: backend}
	p.restore()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestReplicaPartitioned: one replica cut off from Redis while another
// keeps writing serves from its copy, denies once the posture it holds is
// older than max_age, and when the network is back resyncs, logs how far
// behind it was, and allows again from what was written meanwhile.
func TestReplicaPartitioned(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	b, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(b), "max_age: 10m", "max_age: 3s", 1)), 0o600)
	proxy := newCutProxy(t, rd.addr())
	rs := replicaEnvs(t, e, 2, rd.addr())
	cfg, _ := os.ReadFile(rs[1].cfgPath)
	os.WriteFile(rs[1].cfgPath, []byte(strings.Replace(string(cfg), rd.addr(), proxy.addr, 1)), 0o600)
	rs[0].start()
	g := rs[1].start()

	post := func(compliant bool) {
		t.Helper()
		id, now := "evt-"+uuid4(), time.Now()
		if code, body := postTo(t, rs[0], id, postureEvent(id, e.dev1ID, compliant, now), now, e.feedKey); code != 200 {
			t.Fatalf("feed on replica 1: %d %s", code, body)
		}
	}
	post(true)
	rs[1].waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)

	proxy.cut()
	g.waitLog(`"msg":"shared store unreachable`)
	// Another write on replica 1, which replica 2 misses for now; it
	// still decides from its copy until that posture is stale.
	rs[0].setCompliant(e.dev2ID, true)
	rs[1].waitStatus(t, e.dev1Cert, e.dev1Key, "/", 403)
	if reason := rs[1].reasonOf(t, e.dev1Cert, e.dev1Key, "/"); reason != "device.posture_stale" {
		t.Errorf("replica 2 with stale posture: reason %q, want device.posture_stale", reason)
	}
	post(true)
	rs[0].waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)

	proxy.restore()
	g.waitLog(`"msg":"shared store reachable again`)
	rs[1].waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)
	for _, line := range strings.Split(g.logs(), "\n") {
		if strings.Contains(line, "shared store reachable again") && !strings.Contains(line, `"behind":2`) {
			t.Errorf("resync log line does not say it was 2 transactions behind: %s", line)
		}
	}
}

// reasonOf returns the reason of a denied GET path with the device
// certificate ("" when allowed).
func (e *env) reasonOf(t *testing.T, cert, key, path string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(path), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client(cert, key, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 {
		return ""
	}
	return parseProblem(t, string(body)).Reason
}

package test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tryPost posts a signed uem delivery and returns its status, 0 when the
// replica could not be reached (it is down, as a load balancer sees it).
func tryPost(e *env, id string, body []byte, ts time.Time, key []byte) int {
	req, _ := http.NewRequest(http.MethodPost, e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	req.Header.Set("webhook-signature", signFeed(key, id, ts, body))
	c := e.client("", "", false)
	c.Timeout = 10 * time.Second
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReplicaRestartedDuringFeedBurst: eight senders post posture events
// to two replicas, as a load balancer spreads them (a refused or failed
// delivery is sent again to the other replica), while replica 2 is
// killed (SIGKILL) and started again. Every acknowledged event is in
// Redis, and the restarted replica, which loads its copy from Redis while
// the burst goes on and then follows the change stream, ends with
// exactly the records replica 1 has.
func TestReplicaRestartedDuringFeedBurst(t *testing.T) {
	rd := startRedisPeer(t)
	e := newEnv(t)
	rs := replicaEnvs(t, e, 2, rd.addr())
	rs[0].start()
	g2 := rs[1].start()

	const senders, minPerSender = 8, 40
	var (
		mu     sync.Mutex
		acked  []string // device ids whose event got a 200
		failed int      // deliveries refused or failed, then sent again
	)
	stop := make(chan struct{})
	quarter := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i >= minPerSender {
					select {
					case <-stop:
						return
					default:
					}
				}
				dev := fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", s, i)
				id := "evt-" + uuid4()
				stored := false
				for try := 0; try < 200 && !stored; try++ {
					now := time.Now()
					code := tryPost(rs[(s+i+try)%2], id, postureEvent(id, dev, true, now), now, e.feedKey)
					if stored = code == 200; !stored {
						mu.Lock()
						failed++
						mu.Unlock()
						time.Sleep(20 * time.Millisecond) // a sender's retry backoff
					}
				}
				if !stored {
					t.Errorf("event %s for %s was never stored", id, dev)
					return
				}
				mu.Lock()
				acked = append(acked, dev)
				if len(acked) == senders*minPerSender/4 {
					once.Do(func() { close(quarter) })
				}
				mu.Unlock()
			}
		})
	}
	<-quarter
	g2.cmd.Process.Kill()
	<-g2.done
	mu.Lock()
	atKill := len(acked)
	mu.Unlock()
	g2 = rs[1].start() // returns once /readyz says the copy is loaded
	mu.Lock()
	atRestart := len(acked)
	mu.Unlock()
	// Let the burst run on with the restarted replica taking its share.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= atRestart+senders*10 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d events acknowledged (%d before the kill, %d by the restart), %d deliveries sent again",
		len(acked), atKill, atRestart, failed)
	if !strings.Contains(g2.logs(), `"msg":"shared store loaded"`) {
		t.Errorf("the restarted replica did not log its load:\n%s", g2.logs())
	}

	// Nothing acknowledged is lost.
	dump := filepath.Join(e.dir, "after.jsonl")
	if _, code := run(t, binPath, "store", "export", "--config", rs[0].cfgPath, "--out", dump); code != 0 {
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
		t.Errorf("%d of %d acknowledged events are not in Redis", missing, len(acked))
	}

	// Both copies converge on what Redis holds.
	want := strconv.Itoa(len(acked))
	for i, r := range rs {
		gp := &gatewayProc{t: t, admin: r.admin}
		got := ""
		for range 200 {
			if got = gp.metric(`portcullis_posture_records{kind="device"}`); got == want {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got != want {
			t.Errorf("replica %d holds %s devices, want %s", i+1, got, want)
		}
	}
}

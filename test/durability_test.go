package test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKillDuringFeedBurst: kill -9 the gateway while signed feed events
// pour in; after a restart every event that was answered 2xx is in the
// store. An acknowledged event must never be lost.
func TestKillDuringFeedBurst(t *testing.T) {
	e := newEnv(t)
	g := e.start()

	type acked struct{ device, event string }
	var (
		mu    sync.Mutex
		acks  []acked
		sent  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		tr    = e.client("", "", true).Transport
		posts = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dev, id := uuid4(), fmt.Sprintf("evt-%d-%d", w, i)
				now := time.Now()
				body := postureEvent(id, dev, true, now)
				req, _ := http.NewRequest("POST", e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", id)
				req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
				req.Header.Set("webhook-signature", signFeed(e.feedKey, id, now, body))
				sent.Add(1)
				resp, err := posts.Do(req)
				if err != nil {
					continue // killed mid-request: not acknowledged, may or may not be stored
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acks = append(acks, acked{dev, id})
					mu.Unlock()
				}
			}
		}()
	}
	// Let a few hundred deliveries through, then kill without warning.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.cmd.Process.Kill()
	<-g.done
	close(stop)
	wg.Wait()
	mu.Lock()
	got := append([]acked(nil), acks...)
	mu.Unlock()
	if len(got) < 50 {
		t.Fatalf("only %d deliveries acknowledged before the kill", len(got))
	}

	e.start()
	var missing []string
	for _, a := range got {
		code, dev := e.adminGet(t, "/v1/devices/corp/"+a.device, true)
		recs, _ := dev["records"].([]any)
		if code != 200 || dev["known"] != true || len(recs) != 1 {
			missing = append(missing, a.event)
		}
	}
	t.Logf("%d sent, %d acknowledged before kill -9; %d missing after restart", sent.Load(), len(got), len(missing))
	if len(missing) > 0 {
		t.Errorf("acknowledged events lost: %s", strings.Join(missing, " "))
	}
}

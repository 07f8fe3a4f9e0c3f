package feeds

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIngest posts signed events from parallel clients over real
// HTTP through the handler into a real bbolt store, and reports events
// per second. Each delivery is durable before its reply, so the figure
// depends on the disk's fsync rate; group commit shares one fsync among
// concurrent deliveries.
func BenchmarkIngest(b *testing.B) {
	for _, size := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			h := newHarness(b)
			h.cfg.MaxBody = 1 << 20
			h.close()
			h.open()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			ts := strconv.FormatInt(h.now.Unix(), 10)
			observed := h.now.Format("2006-01-02T15:04:05Z")
			var seq atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var buf bytes.Buffer
				for pb.Next() {
					n := seq.Add(1)
					id := "b" + strconv.FormatInt(n, 10)
					buf.Reset()
					if size > 1 {
						buf.WriteByte('[')
					}
					for i := range size {
						if i > 0 {
							buf.WriteByte(',')
						}
						fmt.Fprintf(&buf, `{"spec":"portcullis.posture.v1","event_id":"%s-%d","source":"zimperium","observed_at":"%s","device":{"id":"dev-%d-%d"},"managed":true,"compliant":true,"threat":{"level":"none"},"state":"active"}`,
							id, i, observed, n, i)
					}
					if size > 1 {
						buf.WriteByte(']')
					} else {
						// A single event's id must equal webhook-id.
						buf.Reset()
						fmt.Fprintf(&buf, `{"spec":"portcullis.posture.v1","event_id":"%s","source":"zimperium","observed_at":"%s","device":{"id":"dev-%d"},"managed":true,"compliant":true,"threat":{"level":"none"},"state":"active"}`,
							id, observed, n)
					}
					body := buf.Bytes()
					req, _ := http.NewRequest(http.MethodPost, h.url, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set(HeaderID, id)
					req.Header.Set(HeaderTimestamp, ts)
					req.Header.Set(HeaderSignature, SignWebhook(h.keys[0], id, h.now, body))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(int(seq.Load())*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSSFPush pushes SETs signed with ES256 from parallel clients
// over real HTTP; each is verified (signature, claims) and its risk
// change is durable before the 202. Signing happens in the clients, on
// the same cores.
func BenchmarkSSFPush(b *testing.B) {
	h := newSSFHarness(b, "push")
	h.push(h.tx.sign(h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{}))) // warm the key cache
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			subj := map[string]any{"format": "email", "email": "user" + strconv.FormatInt(i%1000, 10) + "@acme.example"}
			tok := h.tx.sign(h.tx.claims(h.now, subj, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "HIGH", "event_timestamp": h.now.Unix() - 1000 + i}))
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL, strings.NewReader(tok))
			req.Header.Set("Content-Type", "application/secevent+jwt")
			req.Header.Set("Authorization", "Bearer "+ssfToken)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "SETs/s")
}

// BenchmarkSSFVerify measures SET verification alone (ES256), one core.
func BenchmarkSSFVerify(b *testing.B) {
	h := newSSFHarness(b, "push")
	tok := h.tx.sign(h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{}))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ssf.verifier.verify(ctx, tok, h.now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOktaIngest posts Okta hook deliveries of 50 risk events each
// from parallel clients; every delivery is durable before its 200.
func BenchmarkOktaIngest(b *testing.B) {
	h := newOktaHarness(b)
	defer h.close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		events := make([]string, 50)
		for pb.Next() {
			d := n.Add(1)
			for i := range events {
				events[i] = strings.Replace(riskEvent(fmt.Sprintf("u%d-%d", d, i), t0.Add(time.Duration(d)*time.Millisecond), "LOW", "HIGH"),
					"J.Doe@acme.example", fmt.Sprintf("user%d@acme.example", i), 1)
			}
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL, strings.NewReader(oktaDelivery(events...)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", oktaSecret)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load()*50)/b.Elapsed().Seconds(), "events/s")
}

package feeds

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
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

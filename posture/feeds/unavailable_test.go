package feeds

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/posture"
)

// downBackend is a shared store that cannot be reached.
type downBackend struct{}

func (downBackend) Commit(context.Context, []posture.Op) (uint64, error) {
	return 0, fmt.Errorf("%w: dial tcp 127.0.0.1:6379: connection refused", posture.ErrUnavailable)
}
func (downBackend) Close() error { return nil }

// A feed whose shared store is unreachable answers 503 with Retry-After:
// nothing was stored, and the sender must come back.
func TestWebhookSharedStoreUnreachable(t *testing.T) {
	h := newHarness(t)
	db := posture.NewShared(downBackend{}, posture.Options{Now: func() time.Time { return h.now }})
	defer db.Close()
	var logMu sync.Mutex
	wh, err := NewWebhook(h.cfg, db, Options{Logger: slogTo(&bytes.Buffer{}, &logMu), Registry: prometheus.NewRegistry(), Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(wh)
	defer srv.Close()
	body := event("e1", t0, nil)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, "e1")
	req.Header.Set(HeaderTimestamp, fmt.Sprint(h.now.Unix()))
	req.Header.Set(HeaderSignature, SignWebhook(h.keys[0], "e1", h.now, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("reply = %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

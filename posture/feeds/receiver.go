package feeds

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"portcullis/posture"
)

// A Receiver is one configured feed: an [http.Handler] the gateway mounts
// at Path, and a Run loop for the work the feed does on its own (polling,
// stream management). Run blocks until ctx ends and returns nil then; a
// feed with nothing to do in the background just waits.
type Receiver interface {
	http.Handler
	Name() string
	Path() string
	Run(ctx context.Context) error
	Health() FeedHealth
}

// New builds the receiver of cfg's type. cfg's file names must already be
// resolved; DeviceCA must be filled for feeds that report devices.
func New(cfg posture.FeedConfig, db *posture.DB, opts Options) (Receiver, error) {
	switch cfg.Type {
	case posture.FeedWebhook:
		return NewWebhook(cfg, db, opts)
	case posture.FeedOktaHook:
		return NewOktaHook(cfg, db, opts)
	case posture.FeedSSF:
		return NewSSF(cfg, db, opts)
	case posture.FeedUniversalLogout:
		return NewUniversalLogout(cfg, db, opts)
	}
	return nil, fmt.Errorf("feeds: feed %q: unknown type %q", cfg.Name, cfg.Type)
}

// FeedHealth is what a feed reports about itself to the admin API and
// /readyz.
type FeedHealth struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// LastEvent is when the feed last stored an event; zero if never.
	LastEvent time.Time `json:"last_event,omitzero"`
	// Accepted counts events stored (or recognised as duplicates),
	// Rejected refused requests or tokens, Ignored events accepted but
	// not acted on (unknown subject or event type).
	Accepted uint64 `json:"accepted"`
	Rejected uint64 `json:"rejected"`
	Ignored  uint64 `json:"ignored"`
	// LastError is the latest failure (a refused request, a failed poll);
	// empty if none.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// health is the counters behind [FeedHealth], safe for concurrent use.
type health struct {
	name, typ string
	m         *Metrics
	lastEvent atomic.Int64 // Unix ns
	accepted  atomic.Uint64
	rejected  atomic.Uint64
	ignored   atomic.Uint64

	mu        sync.Mutex // guards lastErr and lastErrAt
	lastErr   string
	lastErrAt time.Time
}

func (h *health) init(name string, typ posture.FeedType, m *Metrics) {
	h.name, h.typ, h.m = name, string(typ), m
}

// stored records n events stored at t.
func (h *health) stored(n int, t time.Time) {
	if n <= 0 {
		return
	}
	h.accepted.Add(uint64(n))
	for {
		old := h.lastEvent.Load()
		if t.UnixNano() <= old || h.lastEvent.CompareAndSwap(old, t.UnixNano()) {
			break
		}
	}
	h.m.lastEvent.WithLabelValues(h.name).Set(float64(h.lastEvent.Load()) / 1e9)
}

func (h *health) ignore(n int) { h.ignored.Add(uint64(n)) }

func (h *health) reject() { h.rejected.Add(1) }

func (h *health) fail(err string, t time.Time) {
	h.mu.Lock()
	h.lastErr, h.lastErrAt = err, t
	h.mu.Unlock()
}

func (h *health) snapshot() FeedHealth {
	fh := FeedHealth{
		Name: h.name, Type: h.typ,
		Accepted: h.accepted.Load(), Rejected: h.rejected.Load(), Ignored: h.ignored.Load(),
	}
	if ns := h.lastEvent.Load(); ns != 0 {
		fh.LastEvent = time.Unix(0, ns).UTC()
	}
	h.mu.Lock()
	fh.LastError, fh.LastErrorAt = h.lastErr, h.lastErrAt
	h.mu.Unlock()
	return fh
}

// waitDone blocks until ctx ends; it is the Run of a feed with no
// background work.
func waitDone(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// sleepCtx waits d or until ctx ends, reporting whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package console

import (
	"sort"
	"sync"
	"time"

	"portcullis/gateway/audit"
)

// Sizes of what the hub keeps.
const (
	recentRecords = 2000 // decision records kept for the decisions page
	chartSeconds  = 3600 // per-second counters: the last hour
	maxReasons    = 64   // distinct reasons counted per second; the rest count as "other"
	streamBuffer  = 256  // records waiting for one browser's event stream
)

// otherReason is the reason counted for reasons beyond maxReasons.
const otherReason = "other"

// hub takes the decision records the log fans out, keeps the recent ones
// and per-second counts of the last hour, and passes each on to the
// browsers watching the stream. It runs off the request path: the log
// never waits for it.
type hub struct {
	mu      sync.Mutex // guards every field below
	recent  []audit.Record
	next    int // where the next record goes in recent
	total   uint64
	seconds [chartSeconds]second
	streams map[*stream]struct{}
}

// second counts the decisions of one second.
type second struct {
	unix    int64 // which second this slot holds; 0 if none yet
	allowed uint32
	denied  uint32
	reasons map[string]uint32 // denials by reason
}

// stream is one browser's event stream.
type stream struct {
	ch      chan audit.Record
	dropped uint64 // records it was too slow for; guarded by hub.mu
}

func newHub() *hub {
	return &hub{recent: make([]audit.Record, 0, recentRecords), streams: map[*stream]struct{}{}}
}

// add takes one record, received at now.
func (h *hub) add(rec audit.Record, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recent) < recentRecords {
		h.recent = append(h.recent, rec)
	} else {
		h.recent[h.next] = rec
	}
	h.next = (h.next + 1) % recentRecords
	h.total++

	sec := now.Unix()
	s := &h.seconds[sec%chartSeconds]
	if s.unix != sec {
		s.unix, s.allowed, s.denied = sec, 0, 0
		clear(s.reasons)
	}
	if rec.Verdict == "allow" {
		s.allowed++
	} else {
		s.denied++
		if s.reasons == nil {
			s.reasons = map[string]uint32{}
		}
		reason := rec.Reason
		if _, ok := s.reasons[reason]; !ok && len(s.reasons) >= maxReasons {
			reason = otherReason
		}
		s.reasons[reason]++
	}
	for st := range h.streams {
		select {
		case st.ch <- rec:
		default:
			st.dropped++
		}
	}
}

// recentMatching returns up to limit of the kept records that match f,
// newest first.
func (h *hub) recentMatching(f func(*audit.Record) bool, limit int) []audit.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []audit.Record
	n := len(h.recent)
	for i := 1; i <= n && len(out) < limit; i++ {
		r := &h.recent[(h.next-i+n)%n]
		if f(r) {
			out = append(out, *r)
		}
	}
	return out
}

// subscribe adds a browser's stream; the returned function removes it.
func (h *hub) subscribe() (*stream, func()) {
	st := &stream{ch: make(chan audit.Record, streamBuffer)}
	h.mu.Lock()
	h.streams[st] = struct{}{}
	h.mu.Unlock()
	return st, func() {
		h.mu.Lock()
		delete(h.streams, st)
		h.mu.Unlock()
	}
}

// droppedFor returns how many records st missed so far.
func (h *hub) droppedFor(st *stream) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return st.dropped
}

// series is the last hour of counts in buckets, oldest first.
type series struct {
	start   time.Time // the first bucket's start
	bucket  time.Duration
	allowed []float64 // per second, averaged over the bucket
	denied  []float64
	// reasons are the denial reasons of the hour, most frequent first,
	// with per-bucket rates in byReason (same order).
	reasons  []reasonTotal
	byReason [][]float64
	total    uint64 // records ever received
}

type reasonTotal struct {
	Reason string
	Count  uint64
}

// chart sums the per-second counters of the hour before now into n
// buckets.
func (h *hub) chart(now time.Time, n int) series {
	per := chartSeconds / n
	end := now.Unix()
	first := end - int64(n*per) + 1
	out := series{start: time.Unix(first, 0), bucket: time.Duration(per) * time.Second,
		allowed: make([]float64, n), denied: make([]float64, n)}
	rates := map[string][]float64{}
	totals := map[string]uint64{}
	h.mu.Lock()
	out.total = h.total
	for sec := first; sec <= end; sec++ {
		s := &h.seconds[sec%chartSeconds]
		if s.unix != sec {
			continue
		}
		b := int(sec-first) / per
		out.allowed[b] += float64(s.allowed)
		out.denied[b] += float64(s.denied)
		for reason, c := range s.reasons {
			r := rates[reason]
			if r == nil {
				r = make([]float64, n)
				rates[reason] = r
			}
			r[b] += float64(c)
			totals[reason] += uint64(c)
		}
	}
	h.mu.Unlock()
	for i := range n {
		out.allowed[i] /= float64(per)
		out.denied[i] /= float64(per)
	}
	for reason, c := range totals {
		out.reasons = append(out.reasons, reasonTotal{reason, c})
	}
	sort.Slice(out.reasons, func(i, j int) bool {
		if out.reasons[i].Count != out.reasons[j].Count {
			return out.reasons[i].Count > out.reasons[j].Count
		}
		return out.reasons[i].Reason < out.reasons[j].Reason
	})
	for _, rt := range out.reasons {
		r := rates[rt.Reason]
		for i := range r {
			r[i] /= float64(per)
		}
		out.byReason = append(out.byReason, r)
	}
	return out
}

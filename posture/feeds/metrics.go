package feeds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters of every feed, shared by the feeds of one
// gateway (the feed is a label).
type Metrics struct {
	// events counts events by what the store did with them: applied,
	// duplicate or out_of_order.
	events *prometheus.CounterVec
	// requests counts requests by HTTP status.
	requests *prometheus.CounterVec
	// rejections counts refused requests by reason code.
	rejections *prometheus.CounterVec
	// lastEvent is the Unix time of the last event each feed stored.
	lastEvent *prometheus.GaugeVec
	// ignored counts events accepted but not acted on, by reason.
	ignored *prometheus.CounterVec
}

// NewMetrics creates the feed metrics and registers them on reg (nil: not
// registered). Registering twice on one registry returns the collectors
// already there, so feeds built separately share them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_feed_events_total",
			Help: "Feed events accepted, by feed and result (applied, duplicate, out_of_order).",
		}, []string{"feed", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_feed_requests_total",
			Help: "Feed requests, by feed and HTTP status code.",
		}, []string{"feed", "code"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_feed_rejections_total",
			Help: "Feed requests refused, by feed and reason code.",
		}, []string{"feed", "reason"}),
		lastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_feed_last_event_timestamp_seconds",
			Help: "Unix time of the last event a feed stored.",
		}, []string{"feed"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_feed_events_ignored_total",
			Help: "Feed events accepted but not acted on, by feed and reason (unknown_subject, unknown_event, unknown_level, malformed_event).",
		}, []string{"feed", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.lastEvent); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.GaugeVec)
		if !ok {
			return nil, err
		}
		m.lastEvent = existing
	}
	for _, c := range []**prometheus.CounterVec{&m.events, &m.requests, &m.rejections, &m.ignored} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, err
			}
			*c = existing
		}
	}
	return m, nil
}

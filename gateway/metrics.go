package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"portcullis/enforcement"
)

// metrics are the gateway's own Prometheus metrics. Labels are bounded:
// resource, verdict, reason, result; never user, device, IP or path.
type metrics struct {
	decisions    *prometheus.CounterVec
	decideTime   prometheus.Histogram
	upstreamH    *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	reevalClosed *prometheus.CounterVec
	reevalSweeps prometheus.Counter
	lastReload   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, version string) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_decisions_total",
			Help: "Requests decided, by resource, verdict and reason.",
		}, []string{"resource", "verdict", "reason"}),
		decideTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portcullis_decision_duration_seconds",
			Help:    "Time from request start to decision (routing, identity, posture lookup, Decide).",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}),
		upstreamH: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_upstream_duration_seconds",
			Help:    "Time from decision to the end of the proxied response, by resource.",
			Buckets: prometheus.DefBuckets,
		}, []string{"resource"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_config_reloads_total",
			Help: "Configuration reloads, by result (ok, error).",
		}, []string{"result"}),
		reevalClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_reevaluation_closed_total",
			Help: "Live requests (websockets, streams) closed because a re-decision denied them, by reason.",
		}, []string{"reason"}),
		reevalSweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_reevaluation_sweeps_total",
			Help: "Re-evaluation passes over the live requests (on a feed change, and on the staleness timer).",
		}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully.",
		}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "portcullis_build_info",
		Help:        "Always 1; the version label says which build runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	m.lastReload.SetToCurrentTime()
	reg.MustRegister(m.decisions, m.decideTime, m.upstreamH, m.reloads, m.reevalClosed, m.reevalSweeps, m.lastReload, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// resourceMetrics caches one resource's series, so the hot path skips
// hashing label values per request. Series are created on first use,
// never ahead: no zero series for reasons never seen, nor for resources
// never proxied to.
type resourceMetrics struct {
	mu sync.RWMutex // guards m
	m  map[enforcement.Decision]prometheus.Counter

	upstream atomic.Pointer[prometheus.Observer]
}

func (m *metrics) decision(dc *resourceMetrics, resource string, d enforcement.Decision, took time.Duration) {
	key := enforcement.Decision{Verdict: d.Verdict, Reason: d.Reason}
	dc.mu.RLock()
	c := dc.m[key]
	dc.mu.RUnlock()
	if c == nil {
		c = m.decisions.WithLabelValues(resource, d.Verdict.String(), string(d.Reason))
		dc.mu.Lock()
		if dc.m == nil {
			dc.m = map[enforcement.Decision]prometheus.Counter{}
		}
		dc.m[key] = c
		dc.mu.Unlock()
	}
	c.Inc()
	m.decideTime.Observe(took.Seconds())
}

func (m *metrics) upstream(rm *resourceMetrics, resource string, took time.Duration) {
	o := rm.upstream.Load()
	if o == nil {
		h := m.upstreamH.WithLabelValues(resource)
		o = &h
		rm.upstream.Store(o) // a race stores the same series twice: harmless
	}
	(*o).Observe(took.Seconds())
}

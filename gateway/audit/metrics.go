package audit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink names, the "sink" label of the metrics.
const (
	sinkOutput = "output"
	sinkSyslog = "syslog"
	// sinkSubscriber counts records a live subscriber (the admin
	// console's decision stream) was too slow to take.
	sinkSubscriber = "subscriber"
)

// metrics are the counters of one Log, resolved once so Write does not
// look labels up.
type metrics struct {
	records   [3]prometheus.Counter // by sink index
	dropped   [3]prometheus.Counter
	errors    [3]prometheus.Counter
	connected prometheus.Gauge
}

const (
	idxOutput = 0
	idxSyslog = 1
	idxSub    = 2
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_audit_records_total",
		Help: "Decision records written, by sink.",
	}, []string{"sink"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_audit_dropped_total",
		Help: "Decision records dropped because the sink's queue was full or the log closed, by sink.",
	}, []string{"sink"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_audit_errors_total",
		Help: "Write, flush and connection errors, by sink.",
	}, []string{"sink"})
	connected := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_audit_syslog_connected",
		Help: "1 while connected to the syslog receiver.",
	})
	if reg != nil {
		var err error
		if records, err = register(reg, records); err != nil {
			return nil, err
		}
		if dropped, err = register(reg, dropped); err != nil {
			return nil, err
		}
		if errs, err = register(reg, errs); err != nil {
			return nil, err
		}
		if connected, err = register(reg, connected); err != nil {
			return nil, err
		}
	}
	m := &metrics{connected: connected}
	for i, sink := range []string{sinkOutput, sinkSyslog, sinkSubscriber} {
		m.records[i] = records.WithLabelValues(sink)
		m.dropped[i] = dropped.WithLabelValues(sink)
		m.errors[i] = errs.WithLabelValues(sink)
	}
	return m, nil
}

// register registers c, or returns the collector already registered
// under its name, so a Log rebuilt on reload keeps counting in the same
// series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

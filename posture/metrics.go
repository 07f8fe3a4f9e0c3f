package posture

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics registers the store's gauges on reg:
// portcullis_posture_records{kind} with kind "device" (devices with a
// record), "device_source" (per-source device records) and "user" (users
// with a risk record), and portcullis_posture_changes_dropped_total.
func (db *DB) RegisterMetrics(reg prometheus.Registerer) error {
	gauge := func(kind string, f func(Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "portcullis_posture_records",
			Help:        "Records in the posture store, by kind.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(f(db.Stats())) })
	}
	cs := []prometheus.Collector{
		gauge("device", func(s Stats) int64 { return s.Devices }),
		gauge("device_source", func(s Stats) int64 { return s.DeviceRecords }),
		gauge("user", func(s Stats) int64 { return s.Users }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portcullis_posture_changes_dropped_total",
			Help: "Change notifications dropped because a subscriber was full.",
		}, func() float64 { return float64(db.Stats().ChangesDropped) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

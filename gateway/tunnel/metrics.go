package tunnel

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the tunnel endpoint's Prometheus metrics. Labels are
// bounded: the tunnel resource's name, the protocol, the direction, and
// the reason code; never user, device or destination.
type Metrics struct {
	// Open is the number of tunnels open now.
	Open *prometheus.GaugeVec
	// Bytes counts bytes carried, by direction: "in" (client to
	// destination) and "out".
	Bytes *prometheus.CounterVec
	// Denials counts CONNECTs refused, by reason code.
	Denials *prometheus.CounterVec
	// Ended counts tunnels that ended, by how.
	Ended *prometheus.CounterVec
}

// NewMetrics registers the tunnel metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_tunnels_open",
			Help: "Tunnels open now, by tunnel resource and protocol (HTTP/1.1, HTTP/2.0, HTTP/3.0).",
		}, []string{"tunnel", "protocol"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_tunnel_bytes_total",
			Help: "Bytes carried by tunnels, by tunnel resource and direction (in: client to destination; out: destination to client).",
		}, []string{"tunnel", "direction"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_tunnel_denials_total",
			Help: "CONNECT requests refused, by tunnel resource and reason code.",
		}, []string{"tunnel", "reason"}),
		Ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_tunnels_ended_total",
			Help: "Tunnels that ended, by tunnel resource and how (a tunnel.* end code, or the reason re-evaluation closed it).",
		}, []string{"tunnel", "end"}),
	}
	for _, c := range []prometheus.Collector{m.Open, m.Bytes, m.Denials, m.Ended} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

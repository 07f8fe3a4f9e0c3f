package saml

import (
	"encoding/xml"
	"io"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts SAML logins and rejections. A nil *Metrics counts
// nothing.
type Metrics struct {
	logins     *prometheus.CounterVec
	rejections *prometheus.CounterVec
}

// NewMetrics registers the SAML metrics on reg. Call it once per
// registry, not per configuration load.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_saml_logins_total",
			Help: "SAML logins completed, by identity provider.",
		}, []string{"idp"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_saml_rejections_total",
			Help: "SAML messages and requests refused, by identity provider and reason.",
		}, []string{"idp", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.logins, m.rejections} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) login(idp string) {
	if m != nil {
		m.logins.WithLabelValues(idp).Inc()
	}
}

func (m *Metrics) rejected(idp string, r Reason) {
	if m != nil {
		m.rejections.WithLabelValues(idp, string(r)).Inc()
	}
}

func xmlEncode(w io.Writer, v any) error {
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	return enc.Encode(v)
}

func xmlUnmarshal(b []byte, v any) error { return xml.Unmarshal(b, v) }

package certs

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descExpiry = prometheus.NewDesc("portcullis_certificate_expiry_timestamp_seconds",
		"When a certificate in use expires (Unix time): server certificates by source (file:<path>, acme:<name>, added), device CA bundles by device_ca:<name> (the earliest).",
		[]string{"source"}, nil)
	descCRLAge = prometheus.NewDesc("portcullis_crl_age_seconds",
		"Seconds since thisUpdate of the newest CRL in force that a device CA's bundle certificates issued, by CA name.",
		[]string{"issuer"}, nil)
	descOCSPCache = prometheus.NewDesc("portcullis_ocsp_cache_total",
		"OCSP lookups of device certificates: hit (answered from the cache), miss (asked the responder), error (the responder failed or answered unusably).",
		[]string{"result"}, nil)
)

// RegisterMetrics registers the device CAs' expiry, CRL age and OCSP
// cache metrics on reg. The values are read at scrape time.
func (d *Devices) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(devicesCollector{d}); err != nil {
		return err
	}
	return reg.Register(expiryCollector{d.expiries})
}

// expiryCollector exports portcullis_certificate_expiry_timestamp_seconds
// for one owner. It describes nothing (an unchecked collector), so that
// Devices and ServerCerts can both export the metric on one registry; their
// sources never collide.
type expiryCollector struct {
	expiries func() ([]string, map[string]time.Time)
}

func (expiryCollector) Describe(chan<- *prometheus.Desc) {}

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	order, at := c.expiries()
	for _, src := range order {
		ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, unixSeconds(at[src]), src)
	}
}

// expiries returns the earliest expiry of each device CA's bundle.
func (d *Devices) expiries() ([]string, map[string]time.Time) {
	var order []string
	at := map[string]time.Time{}
	for _, ca := range d.cas {
		src := "device_ca:" + ca.name
		for _, c := range ca.certs {
			if t, ok := at[src]; !ok || c.NotAfter.Before(t) {
				at[src] = c.NotAfter
			}
		}
		order = append(order, src)
	}
	return order, at
}

type devicesCollector struct{ d *Devices }

func (c devicesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCRLAge
	ch <- descOCSPCache
}

func (c devicesCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.Status()
	for _, ca := range st.CAs {
		if !ca.CRLThisUpdate.IsZero() {
			ch <- prometheus.MustNewConstMetric(descCRLAge, prometheus.GaugeValue, st.Time.Sub(ca.CRLThisUpdate).Seconds(), ca.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descOCSPCache, prometheus.CounterValue, float64(st.OCSP.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(descOCSPCache, prometheus.CounterValue, float64(st.OCSP.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(descOCSPCache, prometheus.CounterValue, float64(st.OCSP.Errors), "error")
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// DevicesStatus is the state of device verification, for the admin API.
type DevicesStatus struct {
	Time time.Time        `json:"time"`
	CAs  []CAStatus       `json:"cas"`
	CRLs []CRLStatus      `json:"crls"`
	OCSP OCSPCacheStatus  `json:"ocsp"`
	URLs []CRLFetchStatus `json:"crl_urls,omitempty"`
}

// CAStatus describes one device CA.
type CAStatus struct {
	Name          string    `json:"name"`
	NotAfter      time.Time `json:"not_after"`                // the earliest expiry of its bundle
	CRLThisUpdate time.Time `json:"crl_this_update,omitzero"` // newest CRL its bundle issued; zero: none
	CRLNextUpdate time.Time `json:"crl_next_update,omitzero"` // of that CRL
	OCSP          string    `json:"ocsp"`                     // off, soft or hard
}

// CRLStatus describes one CRL in force.
type CRLStatus struct {
	Source     string    `json:"source"` // the file path or URL
	Issuer     string    `json:"issuer"`
	Number     string    `json:"number"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Revoked    int       `json:"revoked"`
	Stale      bool      `json:"stale"`
}

// CRLFetchStatus describes one CRL URL's fetches.
type CRLFetchStatus struct {
	URL       string    `json:"url"`
	LastFetch time.Time `json:"last_fetch,omitzero"` // last success; zero: never
	NextFetch time.Time `json:"next_fetch,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// OCSPCacheStatus counts OCSP lookups since start.
type OCSPCacheStatus struct {
	Entries int   `json:"entries"`
	Hits    int64 `json:"hits"`
	Misses  int64 `json:"misses"`
	Errors  int64 `json:"errors"`
}

// Status reports the device CAs, the CRLs in force and the OCSP cache.
func (d *Devices) Status() DevicesStatus {
	now := d.now()
	set := d.crl.Load()
	st := DevicesStatus{Time: now}
	for _, ca := range d.cas {
		cs := CAStatus{Name: ca.name, OCSP: OCSPOff}
		if ca.ocsp != nil {
			cs.OCSP = OCSPSoft
			if ca.ocsp.hard {
				cs.OCSP = OCSPHard
			}
		}
		for _, c := range ca.certs {
			if cs.NotAfter.IsZero() || c.NotAfter.Before(cs.NotAfter) {
				cs.NotAfter = c.NotAfter
			}
			for _, e := range set.byIssuer[string(c.RawSubject)] {
				if e.rl.ThisUpdate.After(cs.CRLThisUpdate) && bytes.Equal(e.rl.RawIssuer, c.RawSubject) {
					cs.CRLThisUpdate, cs.CRLNextUpdate = e.rl.ThisUpdate, e.rl.NextUpdate
				}
			}
		}
		st.CAs = append(st.CAs, cs)
	}
	for _, f := range append(append([]*crlFile{}, set.files...), set.fetched...) {
		if f == nil {
			continue
		}
		for _, e := range f.crls {
			st.CRLs = append(st.CRLs, CRLStatus{
				Source: f.path, Issuer: e.rl.Issuer.String(), Number: e.rl.Number.String(),
				ThisUpdate: e.rl.ThisUpdate, NextUpdate: e.rl.NextUpdate,
				Revoked: len(e.revoked), Stale: now.After(e.rl.NextUpdate),
			})
		}
	}
	d.urlMu.Lock()
	for i, u := range d.crlURLs {
		fs := CRLFetchStatus{URL: u, LastFetch: d.urls[i].lastFetch, NextFetch: d.urls[i].next}
		if err := d.urls[i].lastErr; err != nil {
			fs.LastError = err.Error()
		}
		st.URLs = append(st.URLs, fs)
	}
	d.urlMu.Unlock()
	st.OCSP = OCSPCacheStatus{Entries: d.ocsp.len(), Hits: d.ocsp.hits.Load(), Misses: d.ocsp.misses.Load(), Errors: d.ocsp.errors.Load()}
	return st
}

// RegisterMetrics registers portcullis_certificate_expiry_timestamp_seconds
// for the server certificates on reg, read at scrape time.
func (s *ServerCerts) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(expiryCollector{s.expiries})
}

// expiries returns, per source, the earliest expiry among its
// certificates.
func (s *ServerCerts) expiries() ([]string, map[string]time.Time) {
	earliest := map[string]time.Time{}
	var order []string
	for _, l := range s.Leafs() {
		src := l.Source
		if !strings.HasPrefix(src, "acme:") && src != "added" {
			src = "file:" + src
		}
		t, ok := earliest[src]
		if !ok {
			order = append(order, src)
		}
		if !ok || l.NotAfter.Before(t) {
			earliest[src] = l.NotAfter
		}
	}
	return order, earliest
}

// ServerStatus is the state of the server certificates, for the admin API.
type ServerStatus struct {
	Certificates []LeafInfo `json:"certificates"`
	ACMEDomains  []string   `json:"acme_domains,omitempty"`
	ACMERunning  bool       `json:"acme_running"`
}

// Status reports the server certificates in use and the ACME domains.
func (s *ServerCerts) Status() ServerStatus {
	st := ServerStatus{Certificates: s.Leafs()}
	if s.acme != nil {
		st.ACMEDomains = slices.Clone(s.acme.cfg.Domains)
		st.ACMERunning = s.acme.rt.Load() != nil
	}
	return st
}

package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"portcullis/internal/conf"
)

// A crlServer serves one CRL, replaceable, or fails.
type crlServer struct {
	mu   sync.Mutex
	body []byte
	fail bool
	hits atomic.Int64
	srv  *httptest.Server
}

func newCRLServer(t *testing.T, body []byte) *crlServer {
	s := &crlServer{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, fail := s.body, s.fail
		s.mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *crlServer) set(body []byte, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.fail = body, fail
}

func TestCRLURL(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	leaf := root.leaf(t, func(c *x509.Certificate) { c.NotAfter = testNow.Add(30 * 24 * time.Hour) })
	chain := []*x509.Certificate{leaf}
	srv := newCRLServer(t, root.crl(t, 1, nil, nil))
	d := newTestDevices(t, clock, CAConfig{}, RevocationConfig{CRLURLs: []string{srv.srv.URL + "/root.crl"}}, root.cert)
	var revoked [][]string
	d.OnRevoked(func(s []string) { revoked = append(revoked, s) })

	// Never fetched: closed.
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeCRLStale {
		t.Errorf("before the first fetch = %v, want crl_stale", err)
	}
	if err := d.RefreshCRLs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Verify(chain, nil); err != nil {
		t.Errorf("after the first fetch = %v", err)
	}

	// Not due: nothing is fetched. The CRL runs from testNow-1h to
	// testNow+24h: due at 2/3 of it, but refresh (1h) comes first.
	if err := d.refreshDue(context.Background(), false); err != nil || srv.hits.Load() != 1 {
		t.Errorf("refresh before due: %v, %d fetches; want nil, 1", err, srv.hits.Load())
	}
	if next := d.Status().URLs[0].NextFetch; !next.Equal(testNow.Add(DefaultCRLRefresh)) {
		t.Errorf("next fetch at %s, want %s", next, testNow.Add(DefaultCRLRefresh))
	}

	// Revoked upstream; the refresh when due revokes, and tells.
	srv.set(root.crl(t, 2, []*big.Int{leaf.SerialNumber}, nil), false)
	clock.t = testNow.Add(DefaultCRLRefresh + time.Second)
	if err := d.refreshDue(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 || !slices.Equal(revoked[0], []string{serialHex(leaf.SerialNumber)}) {
		t.Errorf("OnRevoked got %v, want [[%s]]", revoked, serialHex(leaf.SerialNumber))
	}
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeRevoked {
		t.Errorf("after the revoking refresh = %v, want revoked", err)
	}

	// The server fails: the last good copy stays, the error is reported.
	srv.set(nil, true)
	err := d.RefreshCRLs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("refresh from a failing server = %v, want a 503 error", err)
	}
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeRevoked {
		t.Errorf("after a failed refresh = %v, want still revoked", err)
	}
	if st := d.Status().URLs[0]; st.LastError == "" || !st.NextFetch.Equal(clock.t.Add(crlRetry)) {
		t.Errorf("status after failure %+v, want an error and a retry in %s", st, crlRetry)
	}

	// Garbage is an error too, and keeps the last good copy.
	srv.set([]byte("garbage"), false)
	if err := d.RefreshCRLs(context.Background()); err == nil {
		t.Error("refresh of garbage = nil, want an error")
	}
	if len(revoked) != 1 {
		t.Errorf("OnRevoked called again: %v", revoked)
	}
}

func TestCRLURLStale(t *testing.T) {
	for _, tt := range []struct {
		stale string
		want  string
	}{
		{StaleDeny, CodeCRLStale},
		{StaleAllow, ""},
	} {
		t.Run(tt.stale, func(t *testing.T) {
			clock := &testClock{testNow}
			root := newRoot(t, "Root")
			leaf := root.leaf(t, func(c *x509.Certificate) { c.NotAfter = testNow.Add(30 * 24 * time.Hour) })
			srv := newCRLServer(t, root.crl(t, 1, nil, nil))
			d := newTestDevices(t, clock, CAConfig{}, RevocationConfig{CRLURLs: []string{srv.srv.URL}, Stale: tt.stale}, root.cert)
			if err := d.RefreshCRLs(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The CRL server goes away; the copy in hand passes its nextUpdate.
			srv.set(nil, true)
			clock.t = testNow.Add(25 * time.Hour)
			_ = d.refreshDue(context.Background(), false)
			if _, err := d.Verify([]*x509.Certificate{leaf}, nil); codeOf(err) != tt.want {
				t.Errorf("Verify with a stale CRL = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCRLURLSchedule(t *testing.T) {
	d := &Devices{refresh: time.Hour}
	root := newRoot(t, "Root")
	mk := func(this, next time.Duration) *crlFile {
		e, err := parseCRLs(root.crl(t, 1, nil, func(rl *x509.RevocationList) {
			rl.ThisUpdate, rl.NextUpdate = testNow.Add(this), testNow.Add(next)
		}))
		if err != nil {
			t.Fatal(err)
		}
		return &crlFile{crls: e}
	}
	tests := []struct {
		name       string
		this, next time.Duration
		want       time.Duration // from testNow
	}{
		{"refresh first", -time.Hour, 24 * time.Hour, time.Hour},
		{"two thirds first", 0, 30 * time.Minute, 20 * time.Minute},
		{"stale: soon, not now", -2 * time.Hour, -time.Hour, crlPollInterval},
	}
	for _, tt := range tests {
		if got := d.nextFetch(mk(tt.this, tt.next), testNow).Sub(testNow); got != tt.want {
			t.Errorf("%s: next fetch in %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestRevocationConfigValidateURLs(t *testing.T) {
	c := RevocationConfig{CRLURLs: []string{"http://crl.example/a.crl", "file:///etc/crl", ""}, Refresh: conf.Duration(-time.Second), FetchTimeout: conf.Duration(-1)}
	var keys []string
	for _, e := range flatten(c.Validate()) {
		var fe *conf.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a FieldError: %v", e)
		}
		keys = append(keys, fe.Key)
	}
	want := []string{"crl_urls[1]", "crl_urls[2]", "refresh", "fetch_timeout"}
	if !slices.Equal(keys, want) {
		t.Errorf("Validate keys = %v, want %v", keys, want)
	}
}

func TestDevicesMetricsAndStatus(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	srv := newCRLServer(t, root.crl(t, 3, []*big.Int{big.NewInt(5)}, nil))
	d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPSoft}}, RevocationConfig{CRLURLs: []string{srv.srv.URL}}, root.cert)
	if err := d.RefreshCRLs(context.Background()); err != nil {
		t.Fatal(err)
	}
	leaf := root.leaf(t, nil) // no OCSP responder: a soft error
	if _, err := d.Verify([]*x509.Certificate{leaf}, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := d.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	got := gatherValues(t, reg)
	want := map[string]float64{
		`portcullis_crl_age_seconds{issuer="test"}`:                                3600,
		`portcullis_ocsp_cache_total{result="error"}`:                              1,
		`portcullis_ocsp_cache_total{result="hit"}`:                                0,
		`portcullis_ocsp_cache_total{result="miss"}`:                               1,
		`portcullis_certificate_expiry_timestamp_seconds{source="device_ca:test"}`: unixSeconds(root.cert.NotAfter),
	}
	if !maps.Equal(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
	st := d.Status()
	if len(st.CAs) != 1 || st.CAs[0].OCSP != OCSPSoft || !st.CAs[0].NotAfter.Equal(root.cert.NotAfter) || !st.CAs[0].CRLNextUpdate.Equal(testNow.Add(24*time.Hour)) {
		t.Errorf("CA status %+v", st.CAs)
	}
	if len(st.CRLs) != 1 || st.CRLs[0].Number != "3" || st.CRLs[0].Revoked != 1 || st.CRLs[0].Source != srv.srv.URL || st.CRLs[0].Stale {
		t.Errorf("CRL status %+v", st.CRLs)
	}
}

// gatherValues gathers reg into name{labels} → value.
func gatherValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			k := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[k] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[k] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

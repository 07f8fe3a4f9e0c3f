package certs

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
)

func TestACMEConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ACMEConfig
		want []string
	}{
		{"minimal", ACMEConfig{Domains: []string{"gw.example.com"}}, nil},
		{"full", ACMEConfig{Email: "ops@example.com", CA: "https://acme.example/dir", Domains: []string{"a.example.com", "B.example.com."},
			Challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01}, HTTPPort: 8080, TLSALPNPort: 8443}, nil},
		{"no domains", ACMEConfig{}, []string{"domains"}},
		{"bad", ACMEConfig{CA: "acme.example", Domains: []string{"*.example.com", "localhost", "a.example.com", "A.example.com", "bad_name.example"},
			Challenges: []string{"dns-01"}, HTTPPort: -1, TLSALPNPort: 70000},
			[]string{"ca", "domains[0]", "domains[1]", "domains[3]", "domains[4]", "challenges[0]", "http_port", "tls_alpn_port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range flatten(tt.cfg.Validate()) {
				got = append(got, strings.SplitN(e.Error(), ":", 2)[0])
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate keys = %v, want %v", got, tt.want)
			}
		})
	}
	// Nested under the tls section.
	sc := ServerConfig{ACME: &ACMEConfig{}}
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "acme.domains") {
		t.Errorf("ServerConfig.Validate = %v, want acme.domains", err)
	}
}

func TestACMEBeforeRun(t *testing.T) {
	ca := newRoot(t, "Server CA")
	dir := t.TempDir()
	c, k := serverPair(t, ca, []string{"files.example.com"}, nil)
	writePEM(t, dir, "f.pem", c)
	writePEM(t, dir, "f.key", k)
	cfg := ServerConfig{
		Certificates: []CertificateFiles{{Cert: conf.Path(filepath.Join(dir, "f.pem")), Key: conf.Path(filepath.Join(dir, "f.key"))}},
		ACME:         &ACMEConfig{Domains: []string{"acme.example.com"}},
	}

	// Storage needs a place.
	if _, err := NewServerCerts(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "acme.storage") {
		t.Errorf("without a state dir: %v, want an acme.storage error", err)
	}
	s, err := NewServerCerts(cfg, Options{StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	if s.acme.storage != filepath.Join(dir, "state", "acme") {
		t.Errorf("storage %q, want <state>/acme", s.acme.storage)
	}
	if got := s.NextProtos(); !slices.Equal(got, []string{"acme-tls/1"}) {
		t.Errorf("NextProtos = %v", got)
	}

	// Before Run (or before ACME has a certificate) the files answer.
	got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "acme.example.com"})
	if err != nil || got.Leaf.DNSNames[0] != "files.example.com" {
		t.Errorf("ACME name before Run = %v, %v; want the file certificate", got, err)
	}
	if !s.IsTLSALPNChallenge(&tls.ClientHelloInfo{SupportedProtos: []string{"acme-tls/1"}}) || s.IsTLSALPNChallenge(&tls.ClientHelloInfo{SupportedProtos: []string{"h2"}}) {
		t.Error("IsTLSALPNChallenge misreads the ALPN list")
	}
	// A tls-alpn-01 challenge is never answered with a file certificate.
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "acme.example.com", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
		t.Error("tls-alpn-01 before Run answered, want an error")
	}

	// The challenge handler passes other requests, and challenges it
	// cannot answer yet, through.
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := s.HTTPChallengeHandler(next)
	for _, path := range []string{"/", "/.well-known/acme-challenge/abc"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://acme.example.com"+path, nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("%s: %d, want passed through", path, rec.Code)
		}
	}

	// Only http-01: no ALPN protocol to offer.
	cfg.ACME.Challenges = []string{ChallengeHTTP01}
	s, err = NewServerCerts(cfg, Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.NextProtos(); got != nil {
		t.Errorf("NextProtos with http-01 only = %v, want none", got)
	}
	// Only tls-alpn-01: the handler is next itself.
	cfg.ACME.Challenges = []string{ChallengeTLSALPN01}
	s, err = NewServerCerts(cfg, Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.HTTPChallengeHandler(next).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("handler with tls-alpn-01 only: %d", rec.Code)
	}

	// Metrics and status.
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// Devices export the same metric on the same registry.
	d := newTestDevices(t, &testClock{testNow}, CAConfig{}, RevocationConfig{}, ca.cert)
	if err := d.RegisterMetrics(reg); err != nil {
		t.Fatalf("Devices.RegisterMetrics beside ServerCerts: %v", err)
	}
	vals := gatherValues(t, reg)
	for _, key := range []string{
		`portcullis_certificate_expiry_timestamp_seconds{source="file:` + filepath.Join(dir, "f.pem") + `"}`,
		`portcullis_certificate_expiry_timestamp_seconds{source="device_ca:test"}`,
	} {
		if vals[key] == 0 {
			t.Errorf("metrics %v, want %s", vals, key)
		}
	}
	st := s.Status()
	if len(st.Certificates) != 1 || st.ACMERunning || !slices.Equal(st.ACMEDomains, []string{"acme.example.com"}) {
		t.Errorf("Status = %+v", st)
	}
}

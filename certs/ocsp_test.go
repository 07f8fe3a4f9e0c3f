package certs

import (
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"portcullis/internal/conf"
)

// An ocspResponder answers OCSP requests for one CA from a table of
// statuses by serial; a serial missing from the table is "unknown".
type ocspResponder struct {
	t       testing.TB
	ca      *testCA
	signer  *testCA // the responder's certificate and key; nil: the CA itself
	clock   *testClock
	mu      sync.Mutex
	status  map[string]int // serialHex → ocsp.Good / ocsp.Revoked
	fail    bool           // answer 500
	garbage bool           // answer bytes that are not OCSP
	hits    atomic.Int64
	srv     *httptest.Server
}

func newOCSPResponder(t testing.TB, ca *testCA, clock *testClock) *ocspResponder {
	r := &ocspResponder{t: t, ca: ca, clock: clock, status: map[string]int{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *ocspResponder) set(serial *big.Int, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[serialHex(serial)] = status
}

func (r *ocspResponder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.hits.Add(1)
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.fail:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case r.garbage:
		w.Write([]byte("not ocsp"))
		return
	}
	q, err := ocsp.ParseRequest(body)
	if err != nil {
		w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	st, ok := r.status[serialHex(q.SerialNumber)]
	if !ok {
		st = ocsp.Unknown
	}
	now := r.clock.Now()
	tmpl := ocsp.Response{
		Status: st, SerialNumber: q.SerialNumber,
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		RevokedAt: now.Add(-time.Hour), RevocationReason: ocsp.KeyCompromise,
	}
	signer := r.ca
	if r.signer != nil {
		signer = r.signer
		tmpl.Certificate = r.signer.cert
	}
	der, err := ocsp.CreateResponse(r.ca.cert, signer.cert, tmpl, signer.key)
	if err != nil {
		r.t.Error(err)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

func TestOCSP(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there now

	tests := []struct {
		name   string
		mode   string
		status int  // set for the leaf's serial; -1: none (unknown)
		fail   bool // the responder answers 500
		gone   bool // the responder does not listen
		junk   bool // the responder answers garbage
		want   string
	}{
		{"good soft", OCSPSoft, ocsp.Good, false, false, false, ""},
		{"good hard", OCSPHard, ocsp.Good, false, false, false, ""},
		{"revoked soft", OCSPSoft, ocsp.Revoked, false, false, false, CodeRevoked},
		{"revoked hard", OCSPHard, ocsp.Revoked, false, false, false, CodeRevoked},
		{"unknown soft", OCSPSoft, -1, false, false, false, ""},
		{"unknown hard", OCSPHard, -1, false, false, false, CodeRevoked},
		{"unreachable soft", OCSPSoft, ocsp.Good, false, true, false, ""},
		{"unreachable hard", OCSPHard, ocsp.Good, false, true, false, CodeOCSPUnavailable},
		{"server error soft", OCSPSoft, ocsp.Good, true, false, false, ""},
		{"server error hard", OCSPHard, ocsp.Good, true, false, false, CodeOCSPUnavailable},
		{"garbage hard", OCSPHard, ocsp.Good, false, false, true, CodeOCSPUnavailable},
		{"off ignores revoked", OCSPOff, ocsp.Revoked, false, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &testClock{testNow}
			root := newRoot(t, "Root")
			resp := newOCSPResponder(t, root, clock)
			url := resp.srv.URL
			if tt.gone {
				url = downURL
			}
			resp.fail, resp.garbage = tt.fail, tt.junk
			leaf := root.leaf(t, func(c *x509.Certificate) { c.OCSPServer = []string{url} })
			if tt.status >= 0 {
				resp.set(leaf.SerialNumber, tt.status)
			}
			d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: tt.mode, Timeout: conf.Duration(2 * time.Second)}}, RevocationConfig{}, root.cert)
			_, err := d.Verify([]*x509.Certificate{leaf}, nil)
			if got := codeOf(err); got != tt.want {
				t.Errorf("Verify = %v, want code %q", err, tt.want)
			}
			st := d.Status().OCSP
			wantErrs := int64(0)
			if tt.gone || tt.fail || tt.junk {
				wantErrs = 1
			}
			if tt.mode != OCSPOff && (st.Misses != 1 || st.Errors != wantErrs) {
				t.Errorf("OCSP counters %+v, want 1 miss and %d errors", st, wantErrs)
			}
		})
	}
}

func TestOCSPCache(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	resp := newOCSPResponder(t, root, clock)
	leaf := root.leaf(t, func(c *x509.Certificate) { c.OCSPServer = []string{resp.srv.URL} })
	resp.set(leaf.SerialNumber, ocsp.Good)
	d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard}}, RevocationConfig{}, root.cert)
	chain := []*x509.Certificate{leaf}

	// Two CA sets: the verification cache misses, the OCSP cache hits.
	for _, cas := range [][]string{nil, {"test"}, nil} {
		if _, err := d.Verify(chain, cas); err != nil {
			t.Fatal(err)
		}
	}
	if st := d.Status().OCSP; resp.hits.Load() != 1 || st.Hits != 1 || st.Misses != 1 || st.Entries != 1 {
		t.Errorf("responder asked %d times, counters %+v; want 1, 1 hit, 1 miss, 1 entry", resp.hits.Load(), st)
	}

	// Revoked while cached: the answer holds until its nextUpdate.
	resp.set(leaf.SerialNumber, ocsp.Revoked)
	clock.t = testNow.Add(30 * time.Minute)
	if _, err := d.Verify(chain, nil); err != nil {
		t.Errorf("Verify before nextUpdate = %v, want the cached good", err)
	}
	clock.t = testNow.Add(61 * time.Minute)
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeRevoked {
		t.Errorf("Verify after nextUpdate = %v, want revoked", err)
	}
	if resp.hits.Load() != 2 {
		t.Errorf("responder asked %d times, want 2", resp.hits.Load())
	}
}

func TestOCSPResponderOverrideAndDelegation(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	resp := newOCSPResponder(t, root, clock)
	noAIA := root.leaf(t, nil)
	resp.set(noAIA.SerialNumber, ocsp.Good)

	// Without a responder anywhere, hard mode refuses.
	d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard}}, RevocationConfig{}, root.cert)
	if _, err := d.Verify([]*x509.Certificate{noAIA}, nil); codeOf(err) != CodeOCSPUnavailable {
		t.Errorf("no responder, hard = %v, want ocsp_unavailable", err)
	}

	// The override supplies it.
	d = newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard, Responder: resp.srv.URL}}, RevocationConfig{}, root.cert)
	if _, err := d.Verify([]*x509.Certificate{noAIA}, nil); err != nil {
		t.Errorf("responder override = %v", err)
	}

	// A delegated responder must have the OCSPSigning EKU.
	for _, tt := range []struct {
		name string
		eku  []x509.ExtKeyUsage
		want string
	}{
		{"delegated with OCSPSigning", []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, ""},
		{"delegated without OCSPSigning", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CodeOCSPUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := newKey(t)
			tmpl := leafTemplate("responder")
			tmpl.ExtKeyUsage = tt.eku
			resp.mu.Lock()
			resp.signer = &testCA{cert: mustCreate(t, tmpl, root.cert, k.Public(), root.key), key: k}
			resp.mu.Unlock()
			leaf := root.leaf(t, func(c *x509.Certificate) { c.OCSPServer = []string{resp.srv.URL} })
			resp.set(leaf.SerialNumber, ocsp.Good)
			d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard}}, RevocationConfig{}, root.cert)
			if _, err := d.Verify([]*x509.Certificate{leaf}, nil); codeOf(err) != tt.want {
				t.Errorf("Verify = %v, want code %q", err, tt.want)
			}
		})
	}
}

// TestOCSPSoftFailureRechecks checks that a soft failure is not cached
// for long: once the responder is back, a revoked certificate is caught.
func TestOCSPSoftFailureRechecks(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	resp := newOCSPResponder(t, root, clock)
	leaf := root.leaf(t, func(c *x509.Certificate) { c.OCSPServer = []string{resp.srv.URL} })
	resp.set(leaf.SerialNumber, ocsp.Revoked)
	resp.fail = true
	d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPSoft}}, RevocationConfig{}, root.cert)
	chain := []*x509.Certificate{leaf}
	if _, err := d.Verify(chain, nil); err != nil {
		t.Fatalf("soft failure = %v, want accepted", err)
	}
	resp.mu.Lock()
	resp.fail = false
	resp.mu.Unlock()
	if _, err := d.Verify(chain, nil); err != nil {
		t.Errorf("within the error TTL = %v, want the cached acceptance", err)
	}
	clock.t = testNow.Add(ocspErrorTTL + time.Second)
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeRevoked {
		t.Errorf("after the error TTL = %v, want revoked", err)
	}
}

func TestOCSPConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  OCSPConfig
		want int
	}{
		{OCSPConfig{}, 0},
		{OCSPConfig{Mode: "hard", Responder: "http://ocsp.example/", Timeout: conf.Duration(time.Second)}, 0},
		{OCSPConfig{Mode: "strict"}, 1},
		{OCSPConfig{Mode: "soft", Responder: "ftp://x"}, 1},
		{OCSPConfig{Timeout: conf.Duration(-1)}, 1},
	}
	for _, tt := range tests {
		if got := len(flatten(tt.cfg.Validate())); got != tt.want {
			t.Errorf("Validate(%+v) = %d problems, want %d", tt.cfg, got, tt.want)
		}
	}
}

// BenchmarkVerifyOCSPCacheHit is a first connection of a device whose
// OCSP answer is cached: chain building and an OCSP cache lookup, no
// network.
func BenchmarkVerifyOCSPCacheHit(b *testing.B) {
	clock := &testClock{testNow}
	root := newRoot(b, "Root")
	resp := newOCSPResponder(b, root, clock)
	leaf := root.leaf(b, func(c *x509.Certificate) { c.OCSPServer = []string{resp.srv.URL} })
	resp.set(leaf.SerialNumber, ocsp.Good)
	d := newTestDevices(b, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard}}, RevocationConfig{}, root.cert)
	chain := []*x509.Certificate{leaf}
	if _, err := d.Verify(chain, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.mu.Lock()
		clear(d.cache)
		d.mu.Unlock()
		if _, err := d.Verify(chain, nil); err != nil {
			b.Fatal(err)
		}
	}
	if resp.hits.Load() != 1 {
		b.Errorf("responder asked %d times, want 1", resp.hits.Load())
	}
}

func FuzzParseOCSPResponse(f *testing.F) {
	root := newRoot(f, "Root")
	leaf := root.leaf(f, nil)
	for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
		der, err := ocsp.CreateResponse(root.cert, root.cert, ocsp.Response{Status: st, SerialNumber: leaf.SerialNumber, ThisUpdate: testNow, NextUpdate: testNow.Add(time.Hour)}, root.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add(ocsp.MalformedRequestErrorResponse)
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := parseOCSPResponse(b, leaf, root.cert)
		if err != nil {
			return
		}
		if resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Fatal("accepted a response about another certificate")
		}
		if r, err := ocspResultOf(resp, testNow); err == nil && !r.expires.After(testNow) {
			t.Fatal("a result that has already expired")
		}
	})
}

// TestOCSPConcurrent checks that concurrent first handshakes of one
// device ask the responder once.
func TestOCSPConcurrent(t *testing.T) {
	clock := &testClock{testNow}
	root := newRoot(t, "Root")
	resp := newOCSPResponder(t, root, clock)
	leaf := root.leaf(t, func(c *x509.Certificate) { c.OCSPServer = []string{resp.srv.URL} })
	resp.set(leaf.SerialNumber, ocsp.Good)
	d := newTestDevices(t, clock, CAConfig{OCSP: OCSPConfig{Mode: OCSPHard}}, RevocationConfig{}, root.cert)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := d.Verify([]*x509.Certificate{leaf}, nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := resp.hits.Load(); n != 1 {
		t.Errorf("responder asked %d times, want 1", n)
	}
}

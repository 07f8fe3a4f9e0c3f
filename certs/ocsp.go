package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"portcullis/internal/conf"
)

// Values of OCSPConfig.Mode.
const (
	OCSPOff  = "off"
	OCSPSoft = "soft"
	OCSPHard = "hard"
)

// DefaultOCSPTimeout bounds one OCSP request when the configuration leaves
// timeout out.
const DefaultOCSPTimeout = 3 * time.Second

const (
	// maxOCSPResponse bounds an OCSP response body.
	maxOCSPResponse = 1 << 20
	// ocspDefaultTTL is how long a response without nextUpdate is trusted.
	ocspDefaultTTL = time.Hour
	// ocspErrorTTL is how long a failed lookup is remembered, so that an
	// unreachable responder costs one timeout per certificate and minute
	// rather than one per handshake.
	ocspErrorTTL = time.Minute
	// ocspCacheMax bounds the OCSP response cache.
	ocspCacheMax = 10000
	// ocspSkew is the clock skew tolerated on thisUpdate.
	ocspSkew = 5 * time.Minute
)

// OCSPConfig configures OCSP checks of one CA's device certificates.
type OCSPConfig struct {
	// Mode is "off" (default: no OCSP), "soft" (a responder that cannot be
	// reached, or answers "unknown", lets the certificate pass, logged and
	// counted) or "hard" (it refuses the certificate).
	Mode string `yaml:"mode"`
	// Responder overrides the OCSP URL the certificates name in their
	// authority information access extension. Optional.
	Responder string `yaml:"responder"`
	// Timeout bounds one OCSP request. Default 3s.
	Timeout conf.Duration `yaml:"timeout"`
}

// Validate reports every problem, each naming its key.
func (c *OCSPConfig) Validate() error {
	var errs []error
	switch c.Mode {
	case "", OCSPOff, OCSPSoft, OCSPHard:
	default:
		errs = append(errs, conf.Errorf("mode", "unknown value %q (want off, soft or hard)", c.Mode))
	}
	if c.Responder != "" {
		if err := checkHTTPURL(c.Responder); err != nil {
			errs = append(errs, conf.Errorf("responder", "%v", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, conf.Errorf("timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}

// checkHTTPURL accepts an absolute http or https URL.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", s)
	}
	return nil
}

// ocspPolicy is a CA's compiled OCSPConfig; nil means off.
type ocspPolicy struct {
	hard      bool
	responder string
	timeout   time.Duration
}

func (c *OCSPConfig) compile() *ocspPolicy {
	if c.Mode == "" || c.Mode == OCSPOff {
		return nil
	}
	p := &ocspPolicy{hard: c.Mode == OCSPHard, responder: c.Responder, timeout: time.Duration(c.Timeout)}
	if p.timeout == 0 {
		p.timeout = DefaultOCSPTimeout
	}
	return p
}

// An ocspKey names one certificate for the OCSP cache: its issuer and its
// serial number.
type ocspKey struct {
	issuer [32]byte // SHA-256 of the issuer certificate
	serial string   // serialHex
}

// An ocspResult is a cached OCSP answer, or a cached failure to get one.
type ocspResult struct {
	status  int       // ocsp.Good, ocsp.Revoked or ocsp.Unknown; meaningless when err is set
	err     error     // the responder could not be reached or its answer was unusable
	expires time.Time // when the result must be fetched again
}

// ocspCache holds OCSP results and counts lookups.
type ocspCache struct {
	mu sync.Mutex
	m  map[ocspKey]*ocspResult

	hits, misses, errors atomic.Int64

	// flight makes concurrent lookups of one certificate share one request.
	flightMu sync.Mutex
	flight   map[ocspKey]chan struct{}
}

func newOCSPCache() *ocspCache {
	return &ocspCache{m: map[ocspKey]*ocspResult{}, flight: map[ocspKey]chan struct{}{}}
}

func (c *ocspCache) get(k ocspKey, now time.Time) *ocspResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	if !ok {
		return nil
	}
	if !now.Before(r.expires) {
		delete(c.m, k)
		return nil
	}
	return r
}

func (c *ocspCache) put(k ocspKey, r *ocspResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= ocspCacheMax {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = r
}

func (c *ocspCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Errors an OCSP lookup may fail with (wrapped).
var (
	// ErrNoOCSPResponder says neither the certificate nor the
	// configuration names an OCSP responder.
	ErrNoOCSPResponder = errors.New("certs: no OCSP responder")
	// ErrOCSPStale says an OCSP response is past its nextUpdate or not yet
	// valid.
	ErrOCSPStale = errors.New("certs: OCSP response out of its validity period")
)

// checkOCSP looks leaf up with its issuer's OCSP responder (through the
// cache) and applies the CA's policy. It returns when the answer must be
// looked at again, for the verification cache.
func (d *Devices) checkOCSP(ca *deviceCA, leaf, issuer *x509.Certificate, now time.Time) (time.Time, *VerifyError) {
	p := ca.ocsp
	k := ocspKey{issuer: sha256.Sum256(issuer.Raw), serial: serialHex(leaf.SerialNumber)}
	r := d.ocsp.get(k, now)
	if r != nil {
		d.ocsp.hits.Add(1)
	} else {
		r = d.ocspLookup(k, p, leaf, issuer, now)
	}
	switch {
	case r.err != nil:
		if p.hard {
			return time.Time{}, verifyErr(CodeOCSPUnavailable, r.err)
		}
		d.log.Warn("OCSP check failed; accepting the certificate (soft mode)", "ca", ca.name, "serial", k.serial, "error", r.err)
		return r.expires, nil
	case r.status == ocsp.Revoked:
		return time.Time{}, verifyErr(CodeRevoked, fmt.Errorf("serial %s revoked by OCSP", k.serial))
	case r.status == ocsp.Unknown:
		if p.hard {
			return time.Time{}, verifyErr(CodeRevoked, fmt.Errorf("serial %s unknown to the OCSP responder", k.serial))
		}
		d.log.Warn("OCSP responder does not know the certificate; accepting it (soft mode)", "ca", ca.name, "serial", k.serial)
		return r.expires, nil
	}
	return r.expires, nil
}

// ocspLookup fetches and caches the OCSP status of leaf; concurrent
// lookups of one certificate wait for the first.
func (d *Devices) ocspLookup(k ocspKey, p *ocspPolicy, leaf, issuer *x509.Certificate, now time.Time) *ocspResult {
	c := d.ocsp
	var ch chan struct{}
	for {
		c.flightMu.Lock()
		wait, busy := c.flight[k]
		if !busy {
			ch = make(chan struct{})
			c.flight[k] = ch
			c.flightMu.Unlock()
			break
		}
		c.flightMu.Unlock()
		<-wait
		if r := c.get(k, now); r != nil {
			c.hits.Add(1)
			return r
		}
	}
	defer func() {
		c.flightMu.Lock()
		delete(c.flight, k)
		c.flightMu.Unlock()
		close(ch)
	}()
	c.misses.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	resp, err := d.fetchOCSP(ctx, p, leaf, issuer)
	var r *ocspResult
	if err == nil {
		r, err = ocspResultOf(resp, now)
	}
	if err != nil {
		c.errors.Add(1)
		r = &ocspResult{err: err, expires: now.Add(ocspErrorTTL)}
	}
	c.put(k, r)
	return r
}

// fetchOCSP asks the responder about leaf and checks the answer's
// signature.
func (d *Devices) fetchOCSP(ctx context.Context, p *ocspPolicy, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	responder := p.responder
	if responder == "" {
		for _, u := range leaf.OCSPServer {
			if checkHTTPURL(u) == nil {
				responder = u
				break
			}
		}
	}
	if responder == "" {
		return nil, ErrNoOCSPResponder
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("making OCSP request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, responder, bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("OCSP request to %s: %w", responder, err)
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	hreq.Header.Set("Accept", "application/ocsp-response")
	resp, err := d.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("OCSP request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("OCSP responder %s answered %s", responder, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading OCSP response: %w", err)
	}
	if len(body) > maxOCSPResponse {
		return nil, fmt.Errorf("OCSP response over %d bytes", maxOCSPResponse)
	}
	return parseOCSPResponse(body, leaf, issuer)
}

// parseOCSPResponse parses an OCSP response about leaf and checks that
// issuer signed it, directly or through a delegated responder certificate
// that has the OCSPSigning extended key usage.
func parseOCSPResponse(der []byte, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("OCSP response: %w", err)
	}
	if leaf != nil && (resp.SerialNumber == nil || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0) {
		return nil, errors.New("OCSP response is about another certificate")
	}
	if rc := resp.Certificate; rc != nil && !bytes.Equal(rc.Raw, issuer.Raw) {
		// A delegated responder: x/crypto/ocsp checked the issuer signed
		// it, but not that it may sign OCSP responses.
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, errors.New("OCSP responder certificate lacks the OCSPSigning extended key usage")
		}
	}
	return resp, nil
}

// ocspResultOf turns a verified response into a cache entry valid until
// its nextUpdate.
func ocspResultOf(resp *ocsp.Response, now time.Time) (*ocspResult, error) {
	if resp.ThisUpdate.After(now.Add(ocspSkew)) {
		return nil, fmt.Errorf("%w: thisUpdate %s is in the future", ErrOCSPStale, resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if rc := resp.Certificate; rc != nil && (now.Before(rc.NotBefore) || now.After(rc.NotAfter)) {
		return nil, errors.New("OCSP responder certificate is not valid now")
	}
	expires := now.Add(ocspDefaultTTL)
	if !resp.NextUpdate.IsZero() {
		if !now.Before(resp.NextUpdate) {
			return nil, fmt.Errorf("%w: nextUpdate %s has passed", ErrOCSPStale, resp.NextUpdate.UTC().Format(time.RFC3339))
		}
		expires = resp.NextUpdate
	}
	switch resp.Status {
	case ocsp.Good, ocsp.Revoked, ocsp.Unknown:
	default:
		return nil, fmt.Errorf("OCSP status %d", resp.Status)
	}
	return &ocspResult{status: resp.Status, expires: expires}, nil
}

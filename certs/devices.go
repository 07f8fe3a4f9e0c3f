package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"portcullis/internal/conf"
)

// maxPeerChain bounds how many certificates a peer may present, to bound
// path building before anything is verified.
const maxPeerChain = 16

// Devices verifies device certificates against the configured device CAs
// and CRLs, and extracts their [DeviceIdentity]. It is safe for concurrent
// use. The CA set is fixed at construction; CRLs are reloaded by
// [Devices.Reload] and [Devices.Run].
type Devices struct {
	log       *slog.Logger
	now       func() time.Time
	cas       []*deviceCA // in configuration order
	crlPaths  []string
	staleDeny bool

	crl           atomic.Pointer[crlSet]
	verifications atomic.Int64 // chain verifications done (cache misses); for tests

	http      *http.Client
	ocsp      *ocspCache
	crlURLs   []string
	refresh   time.Duration // longest time between fetches of a CRL URL
	fetchTime time.Duration // timeout of one CRL fetch

	reloadMu sync.Mutex  // serializes reloads and fetches
	tried    []fileStamp // guarded by reloadMu: the stamp last tried per CRL file
	urlMu    sync.Mutex
	urls     []urlState // guarded by urlMu: per CRL URL

	// mu protects the following.
	mu        sync.Mutex
	cache     map[cacheKey]*cacheEntry
	cacheMax  int
	onRevoked []func([]string)
}

// A deviceCA is a configured CA, compiled.
type deviceCA struct {
	name     string
	certs    []*x509.Certificate
	pool     *x509.CertPool
	deviceID *rule
	user     *rule // nil: no user
	maxDepth int
	ocsp     *ocspPolicy // nil: no OCSP
}

// NewDevices validates cfg, loads every CA bundle and CRL file and returns
// a verifier. It starts nothing; call [Devices.Run] to follow CRL file
// changes.
func NewDevices(cfg DevicesConfig, opts Options) (*Devices, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Devices{
		log:       opts.logger(),
		now:       opts.clock(),
		staleDeny: cfg.Revocation.Stale != StaleAllow,
		cache:     map[cacheKey]*cacheEntry{},
		cacheMax:  defaultCacheSize,
		http:      opts.httpClient(),
		ocsp:      newOCSPCache(),
		refresh:   time.Duration(cfg.Revocation.Refresh),
		fetchTime: time.Duration(cfg.Revocation.FetchTimeout),
	}
	if d.refresh == 0 {
		d.refresh = DefaultCRLRefresh
	}
	if d.fetchTime == 0 {
		d.fetchTime = DefaultCRLFetchTimeout
	}
	for i, c := range cfg.CAs {
		ca := &deviceCA{name: c.Name, pool: x509.NewCertPool(), maxDepth: c.MaxChainDepth, ocsp: c.OCSP.compile()}
		if ca.maxDepth == 0 {
			ca.maxDepth = DefaultMaxChainDepth
		}
		path := c.Bundle.String()
		data, err := readFile(path)
		if err != nil {
			return nil, conf.AtKey(fmt.Sprintf("cas[%d].bundle", i), fmt.Errorf("device CA %q: reading bundle: %w", c.Name, err))
		}
		ca.certs, err = parseBundle(data)
		if err != nil {
			return nil, conf.AtKey(fmt.Sprintf("cas[%d].bundle", i), fmt.Errorf("device CA %q: bundle %s: %w", c.Name, path, err))
		}
		for _, cert := range ca.certs {
			ca.pool.AddCert(cert)
		}
		ca.deviceID, _ = c.DeviceID.compile() // validated above
		if c.User != nil {
			ca.user, _ = c.User.compile()
		}
		d.cas = append(d.cas, ca)
	}
	var files []*crlFile
	for i, p := range cfg.Revocation.CRLFiles {
		path := p.String()
		f, err := loadCRLFile(path)
		if err != nil {
			return nil, conf.AtKey(fmt.Sprintf("revocation.crl_files[%d]", i), err)
		}
		d.crlPaths = append(d.crlPaths, path)
		files = append(files, f)
	}
	d.tried = make([]fileStamp, len(files))
	d.crlURLs = slices.Clone(cfg.Revocation.CRLURLs)
	d.urls = make([]urlState, len(d.crlURLs))
	d.crl.Store(newCRLSet(1, files, make([]*crlFile, len(d.crlURLs))))
	return d, nil
}

// Names returns the configured CA names in configuration order.
func (d *Devices) Names() []string {
	out := make([]string, len(d.cas))
	for i, ca := range d.cas {
		out[i] = ca.name
	}
	return out
}

// Pool returns a new pool of the CA certificates of the named CAs (nil or
// empty: all), for [crypto/tls.Config.ClientCAs], so that clients learn
// which CAs are acceptable. Unknown names are ignored.
func (d *Devices) Pool(cas []string) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range d.allowed(cas) {
		for _, c := range ca.certs {
			p.AddCert(c)
		}
	}
	return p
}

// allowed returns the CAs named in cas (nil or empty: all), in
// configuration order.
func (d *Devices) allowed(cas []string) []*deviceCA {
	if len(cas) == 0 {
		return d.cas
	}
	var out []*deviceCA
	for _, ca := range d.cas {
		if slices.Contains(cas, ca.name) {
			out = append(out, ca)
		}
	}
	return out
}

// Verify verifies a device certificate chain as a TLS peer sent it
// (chain[0] is the leaf; the rest are untrusted intermediates, in any
// order) against the CAs named in cas (nil or empty: all), and returns the
// identity the first CA that accepts it extracts. Errors are
// [*VerifyError]s.
//
// Beyond crypto/x509's checks, a device certificate must have the
// clientAuth extended key usage, must not be a CA, must have a positive
// serial of at most 20 octets, and no certificate of the chain may have an
// RSA key under 2048 bits (or not a multiple of 8) or a DSA key. The
// chain is bounded by the CA's max_chain_depth and checked against its
// issuers' CRLs, and, when the CA has OCSP on, the leaf against its OCSP
// responder (a cache miss does network I/O, bounded by ocsp.timeout).
//
// Results are cached per leaf fingerprint and CA set until the chain
// expires, a consulted CRL becomes stale, the OCSP answer expires or the
// CRLs change.
func (d *Devices) Verify(chain []*x509.Certificate, cas []string) (*DeviceIdentity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, verifyErr(CodeUnknownCA, ErrNoCertificate)
	}
	now := d.now()
	crl := d.crl.Load()
	key := cacheKey{fp: sha256.Sum256(chain[0].Raw), cas: casKey(cas)}
	if id := d.cacheGet(key, now, crl.gen); id != nil {
		return id, nil
	}
	d.verifications.Add(1)
	e, err := d.verify(chain, cas, now, crl, key.fp)
	if err != nil {
		return nil, err
	}
	d.cachePut(key, e)
	return e.id, nil
}

// ErrNoCertificate says the peer presented no certificate.
var ErrNoCertificate = errors.New("certs: no client certificate")

func (d *Devices) verify(chain []*x509.Certificate, cas []string, now time.Time, crl *crlSet, fp [32]byte) (*cacheEntry, *VerifyError) {
	if len(chain) > maxPeerChain {
		return nil, verifyErr(CodeChainTooDeep, fmt.Errorf("%d certificates presented (at most %d)", len(chain), maxPeerChain))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c == nil {
			return nil, verifyErr(CodeUnknownCA, errors.New("nil certificate in chain"))
		}
		inter.AddCert(c)
	}
	allowed := d.allowed(cas)
	if len(allowed) == 0 {
		return nil, verifyErr(CodeUnknownCA, fmt.Errorf("no device CA among %q", cas))
	}
	var best *VerifyError
	for _, ca := range allowed {
		e, err := d.verifyWith(ca, chain[0], inter, now, crl, fp)
		if err == nil {
			return e, nil
		}
		if moreSpecific(err, best) {
			best = err
		}
	}
	return nil, best
}

// verifyWith verifies leaf against one CA.
func (d *Devices) verifyWith(ca *deviceCA, leaf *x509.Certificate, inter *x509.CertPool, now time.Time, crl *crlSet, fp [32]byte) (*cacheEntry, *VerifyError) {
	// Build chains at a time the leaf is valid, so that an expired
	// certificate from an unknown CA reads "unknown_ca", not "expired".
	at, timeErr := now, (*VerifyError)(nil)
	switch {
	case now.Before(leaf.NotBefore):
		at, timeErr = leaf.NotBefore, verifyErr(CodeNotYetValid, fmt.Errorf("valid from %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
	case now.After(leaf.NotAfter):
		at, timeErr = leaf.NotAfter, verifyErr(CodeExpired, fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         ca.pool,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, classify(err, at)
	}
	if timeErr != nil {
		return nil, timeErr
	}
	if err := checkLeaf(leaf); err != nil {
		return nil, err
	}
	// Shortest chains first: they are the likeliest to fit the depth.
	slices.SortStableFunc(chains, func(a, b []*x509.Certificate) int { return len(a) - len(b) })
	var best *VerifyError
	for _, ch := range chains {
		e, err := d.checkChain(ca, ch, now, crl, fp)
		if err == nil {
			return e, nil
		}
		if best == nil {
			best = err
		}
	}
	return nil, best
}

// checkChain applies the depth, key and revocation checks to one verified
// chain, then extracts the identity.
func (d *Devices) checkChain(ca *deviceCA, ch []*x509.Certificate, now time.Time, crl *crlSet, fp [32]byte) (*cacheEntry, *VerifyError) {
	if n := chainDepth(ch); n > ca.maxDepth {
		return nil, verifyErr(CodeChainTooDeep, fmt.Errorf("chain depth %d (at most %d)", n, ca.maxDepth))
	}
	e := &cacheEntry{gen: crl.gen, notBefore: ch[0].NotBefore, notAfter: ch[0].NotAfter}
	for _, c := range ch {
		if err := checkKey(c); err != nil {
			return nil, verifyErr(CodeWeakKey, fmt.Errorf("%s: %w", c.Subject, err))
		}
		if c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(e.notAfter) {
			e.notAfter = c.NotAfter
		}
	}
	for i := 0; i+1 < len(ch); i++ {
		due, err := crl.check(ch[i], ch[i+1], now, d.staleDeny)
		if err != nil {
			return nil, err
		}
		e.recheckBy(due)
	}
	if ca.ocsp != nil && len(ch) >= 2 {
		due, err := d.checkOCSP(ca, ch[0], ch[1], now)
		if err != nil {
			return nil, err
		}
		e.recheckBy(due)
	}
	leaf := ch[0]
	deviceID, err := ca.deviceID.extract(leaf)
	if err != nil {
		return nil, err.(*VerifyError)
	}
	var user string
	if ca.user != nil {
		user, err = ca.user.extract(leaf)
		var ve *VerifyError
		switch {
		case errors.As(err, &ve) && ve.Code == CodeNoIdentity:
			user = "" // the user is optional: a certificate without one is a device alone
		case err != nil:
			return nil, err.(*VerifyError)
		}
		user = strings.ToLower(user)
	}
	e.id = &DeviceIdentity{
		CA:          ca.name,
		DeviceID:    deviceID,
		User:        user,
		Serial:      serialHex(leaf.SerialNumber),
		Issuer:      leaf.Issuer.String(),
		Subject:     leaf.Subject.String(),
		Fingerprint: hex.EncodeToString(fp[:]),
		NotBefore:   leaf.NotBefore,
		NotAfter:    leaf.NotAfter,
	}
	return e, nil
}

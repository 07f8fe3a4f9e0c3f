package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// crlPollInterval is how often [Devices.Run] looks at the CRL files.
const crlPollInterval = 5 * time.Second

// maxCRLsPerFile bounds the CRLs one file may hold.
const maxCRLsPerFile = 64

var oidExtCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}

// A crlEntry is one parsed CRL.
type crlEntry struct {
	rl      *x509.RevocationList
	revoked map[string]struct{} // serialHex of every revoked certificate

	// mu protects sig.
	mu  sync.Mutex
	sig map[[32]byte]error // issuer fingerprint → CheckSignatureFrom result
}

// verifiedBy checks, once per issuer, that issuer signed the CRL and may
// sign CRLs.
func (e *crlEntry) verifiedBy(issuer *x509.Certificate) error {
	fp := sha256.Sum256(issuer.Raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err, ok := e.sig[fp]; ok {
		return err
	}
	err := e.rl.CheckSignatureFrom(issuer)
	if len(e.sig) < 64 {
		e.sig[fp] = err
	}
	return err
}

// A crlFile is a configured CRL file as last read.
type crlFile struct {
	path  string
	stamp fileStamp
	crls  []*crlEntry
}

// A crlSet is every CRL in force; it is immutable and replaced whole on
// reload. gen tells cache entries made under an older set.
type crlSet struct {
	gen      uint64
	files    []*crlFile             // per configured CRL file
	fetched  []*crlFile             // per configured CRL URL; nil until fetched once
	pending  bool                   // a CRL URL was never fetched
	byIssuer map[string][]*crlEntry // raw issuer name → CRLs
}

func newCRLSet(gen uint64, files, fetched []*crlFile) *crlSet {
	s := &crlSet{gen: gen, files: files, fetched: fetched, byIssuer: map[string][]*crlEntry{}}
	for _, f := range slices.Concat(files, fetched) {
		if f == nil {
			s.pending = true
			continue
		}
		for _, e := range f.crls {
			k := string(e.rl.RawIssuer)
			s.byIssuer[k] = append(s.byIssuer[k], e)
		}
	}
	return s
}

// revokedSerials returns every serial on any CRL of the set.
func (s *crlSet) revokedSerials() map[string]struct{} {
	m := map[string]struct{}{}
	for _, es := range s.byIssuer {
		for _, e := range es {
			for k := range e.revoked {
				m[k] = struct{}{}
			}
		}
	}
	return m
}

// check looks c up on the newest CRL its issuer signed. It returns, when a
// CRL was consulted and stale CRLs deny, that CRL's nextUpdate: a cached
// result must not outlive it.
func (s *crlSet) check(c, issuer *x509.Certificate, now time.Time, staleDeny bool) (time.Time, *VerifyError) {
	entries := s.byIssuer[string(c.RawIssuer)]
	if len(entries) == 0 {
		if s.pending && staleDeny {
			// A CRL URL not fetched yet may be this issuer's: fail closed.
			return time.Time{}, verifyErr(CodeCRLStale, errors.New("a CRL URL has not been fetched yet"))
		}
		return time.Time{}, nil
	}
	var best *crlEntry
	var sigErr error
	for _, e := range entries {
		if err := e.verifiedBy(issuer); err != nil {
			sigErr = err
			continue
		}
		if best == nil || e.rl.Number.Cmp(best.rl.Number) > 0 {
			best = e
		}
	}
	if best == nil {
		// A CRL names this issuer but the issuer did not sign it: fail
		// closed rather than treat the certificate as never revoked.
		return time.Time{}, verifyErr(CodeCRLInvalid, fmt.Errorf("CRL for %s: %w", issuer.Subject, sigErr))
	}
	if now.After(best.rl.NextUpdate) && staleDeny {
		return time.Time{}, verifyErr(CodeCRLStale, fmt.Errorf("CRL for %s was due at %s", issuer.Subject, best.rl.NextUpdate.UTC().Format(time.RFC3339)))
	}
	if _, ok := best.revoked[serialHex(c.SerialNumber)]; ok {
		return time.Time{}, verifyErr(CodeRevoked, fmt.Errorf("serial %s revoked by %s", serialHex(c.SerialNumber), issuer.Subject))
	}
	if staleDeny {
		return best.rl.NextUpdate, nil
	}
	return time.Time{}, nil
}

// loadCRLFile reads and parses one CRL file.
func loadCRLFile(path string) (*crlFile, error) {
	st := stampOf(path)
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CRL: %w", err)
	}
	crls, err := parseCRLs(data)
	if err != nil {
		return nil, fmt.Errorf("CRL file %s: %w", path, err)
	}
	return &crlFile{path: path, stamp: st, crls: crls}, nil
}

// parseCRLs parses the CRLs of a file: PEM "X509 CRL" blocks, or one DER
// CRL. Only complete CRLs are accepted: one without a CRL number or
// nextUpdate, or with a critical extension (a delta CRL, an issuing
// distribution point, a critical CRL number), is an error.
func parseCRLs(data []byte) ([]*crlEntry, error) {
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "X509 CRL" {
				return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
			}
			if len(ders) == maxCRLsPerFile {
				return nil, fmt.Errorf("more than %d CRLs", maxCRLsPerFile)
			}
			ders = append(ders, b.Bytes)
		}
		if bytes.Contains(rest, []byte("-----BEGIN")) {
			return nil, errors.New("bad PEM block")
		}
		if len(ders) == 0 {
			return nil, errors.New("no CRL")
		}
	} else {
		ders = [][]byte{data}
	}
	out := make([]*crlEntry, 0, len(ders))
	for i, der := range ders {
		e, err := parseCRL(der)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseCRL(der []byte) (*crlEntry, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	if rl.Number == nil {
		return nil, errors.New("no CRL number")
	}
	if rl.NextUpdate.IsZero() {
		return nil, errors.New("no nextUpdate")
	}
	for _, ext := range rl.Extensions {
		if ext.Critical {
			if ext.Id.Equal(oidExtCRLNumber) {
				return nil, errors.New("critical CRL number")
			}
			return nil, fmt.Errorf("unsupported critical extension %s", ext.Id)
		}
	}
	e := &crlEntry{rl: rl, revoked: make(map[string]struct{}, len(rl.RevokedCertificateEntries)), sig: map[[32]byte]error{}}
	for _, rc := range rl.RevokedCertificateEntries {
		for _, ext := range rc.Extensions {
			if ext.Critical {
				// certificateIssuer (an indirect CRL) and the like.
				return nil, fmt.Errorf("unsupported critical entry extension %s", ext.Id)
			}
		}
		e.revoked[serialHex(rc.SerialNumber)] = struct{}{}
	}
	return e, nil
}

// OnRevoked registers fn to be called, after a CRL reload, with the serial
// numbers (lower-case hex, as in [DeviceIdentity.Serial]) that the new CRLs
// revoke and the old ones did not. Serials of different issuers may
// collide: a re-evaluator should call [Devices.Verify] again for the
// connections they may concern. fn runs on the goroutine that reloaded and
// must not block.
func (d *Devices) OnRevoked(fn func(serials []string)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onRevoked = append(d.onRevoked, fn)
}

// Reload re-reads every CRL file whose modification time or size changed.
// A file that fails to load keeps its previous CRLs, and the error says
// why. When anything changed, cached verifications are dropped, so the next
// handshake of every device is checked against the new CRLs.
func (d *Devices) Reload() error {
	return d.reload(false)
}

// Run polls the CRL files every few seconds and reloads those that
// changed, until ctx ends. It returns nil at once when no CRL file or URL
// is configured.
//
// CRL URLs are fetched at once, then whenever due (see
// [RevocationConfig.CRLURLs]).
func (d *Devices) Run(ctx context.Context) error {
	if len(d.crlPaths) == 0 && len(d.crlURLs) == 0 {
		return nil
	}
	if len(d.crlURLs) > 0 {
		d.refreshDue(ctx, true)
	}
	t := time.NewTicker(crlPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if len(d.crlPaths) > 0 {
				if err := d.reload(true); err != nil {
					d.log.Error("reloading CRLs; keeping the previous ones", "error", err)
				}
			}
			if len(d.crlURLs) > 0 {
				d.refreshDue(ctx, false)
			}
		}
	}
}

// reload implements Reload. With skipTried, a file whose stamp was already
// tried (and failed) is not read again, so a broken file is reported once.
func (d *Devices) reload(skipTried bool) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.crl.Load()
	files := make([]*crlFile, len(d.crlPaths))
	copy(files, old.files)
	var errs []error
	changed := false
	for i, path := range d.crlPaths {
		st := stampOf(path)
		if files[i] != nil && files[i].stamp == st {
			continue
		}
		if skipTried && d.tried[i] == st {
			continue
		}
		d.tried[i] = st
		f, err := loadCRLFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files[i] = f
		changed = true
	}
	if !changed {
		return errors.Join(errs...)
	}
	added := d.install(old, newCRLSet(old.gen+1, files, old.fetched))
	d.log.Info("reloaded CRLs", "crl_files", len(d.crlPaths), "newly_revoked", len(added))
	return errors.Join(errs...)
}

// install puts ns in force in place of old (the caller holds reloadMu),
// drops cached verifications and tells the OnRevoked callbacks about the
// serials ns revokes and old did not, which it returns.
func (d *Devices) install(old, ns *crlSet) []string {
	d.crl.Store(ns)

	d.mu.Lock()
	clear(d.cache)
	fns := append([]func([]string){}, d.onRevoked...)
	d.mu.Unlock()

	before := old.revokedSerials()
	var added []string
	for s := range ns.revokedSerials() {
		if _, ok := before[s]; !ok {
			added = append(added, s)
		}
	}
	slices.Sort(added)
	if len(added) > 0 {
		for _, fn := range fns {
			fn(added)
		}
	}
	return added
}

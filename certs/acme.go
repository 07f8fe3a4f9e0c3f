package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/certmagic"

	"portcullis/internal/conf"
)

// alpnACMETLS1 is the ALPN protocol of the tls-alpn-01 challenge (RFC 8737).
const alpnACMETLS1 = "acme-tls/1"

// ACME challenge types for ACMEConfig.Challenges.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACMEConfig is `tls.acme`: certificates obtained and renewed with ACME
// (RFC 8555) for some host names. Configuring it means agreeing to the
// ACME CA's subscriber agreement.
type ACMEConfig struct {
	// Email is the ACME account's contact address. Optional but
	// recommended: the CA writes there about expiring certificates.
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Default: Let's Encrypt's production
	// directory.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of CA certificates to trust for the ACME
	// server's own HTTPS, beside the system roots (for a private or test
	// ACME CA such as Pebble). Optional.
	CARoot conf.Path `yaml:"ca_root"`
	// Domains are the host names to get certificates for; the SNI picks
	// them before the certificate files. Required, no wildcards.
	Domains []string `yaml:"domains"`
	// Challenges are the challenge types to answer: http-01 (through the
	// gateway's plain-HTTP listener) and tls-alpn-01 (through its TLS
	// listeners). Default both.
	Challenges []string `yaml:"challenges"`
	// Storage is the directory of the ACME account and certificates.
	// Default: <state dir>/acme.
	Storage conf.Path `yaml:"storage"`
	// Profile selects a certificate profile the ACME CA offers (for
	// example Let's Encrypt's "shortlived"). Optional.
	Profile string `yaml:"profile"`
	// HTTPPort is the port of the gateway's plain-HTTP listener when it is
	// not 80 (port 80 forwarded to it). Optional.
	HTTPPort int `yaml:"http_port"`
	// TLSALPNPort is the port of the gateway's TLS listener when it is not
	// 443 (port 443 forwarded to it). Optional.
	TLSALPNPort int `yaml:"tls_alpn_port"`
}

// Validate reports every problem, each naming its key.
func (c *ACMEConfig) Validate() error {
	var errs []error
	if c.CA != "" {
		if err := checkHTTPURL(c.CA); err != nil {
			errs = append(errs, conf.Errorf("ca", "%v", err))
		}
	}
	if len(c.Domains) == 0 {
		errs = append(errs, conf.Errorf("domains", "required"))
	}
	seen := map[string]bool{}
	for i, d := range c.Domains {
		key := fmt.Sprintf("domains[%d]", i)
		n := normalizeHost(d)
		switch {
		case strings.Contains(d, "*"):
			errs = append(errs, conf.Errorf(key, "%q: wildcards need the dns-01 challenge, which is not supported", d))
		case !validHostname(n):
			errs = append(errs, conf.Errorf(key, "%q is not a DNS host name", d))
		case seen[n]:
			errs = append(errs, conf.Errorf(key, "duplicate domain %q", d))
		}
		seen[n] = true
	}
	for i, ch := range c.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			errs = append(errs, conf.Errorf(fmt.Sprintf("challenges[%d]", i), "unknown challenge %q (want http-01 or tls-alpn-01)", ch))
		}
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"http_port", c.HTTPPort}, {"tls_alpn_port", c.TLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, conf.Errorf(p.key, "port %d out of range", p.port))
		}
	}
	return errors.Join(errs...)
}

func (c *ACMEConfig) challenge(name string) bool {
	return len(c.Challenges) == 0 || slices.Contains(c.Challenges, name)
}

func normalizeHost(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// validHostname accepts LDH labels of 1 to 63 characters, at least two of
// them, at most 253 characters in all.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// acmeManager is the ACME part of [ServerCerts]: configured at
// construction, started by Run.
type acmeManager struct {
	cfg     ACMEConfig // domains normalized
	storage string
	roots   *x509.CertPool // nil: system roots only
	domains map[string]bool
	opts    Options

	rt atomic.Pointer[acmeRuntime] // nil until Run
}

// acmeRuntime is certmagic's state while Run runs.
type acmeRuntime struct {
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
}

func newACMEManager(cfg ACMEConfig, opts Options) (*acmeManager, error) {
	m := &acmeManager{cfg: cfg, domains: map[string]bool{}, opts: opts}
	m.cfg.Domains = nil
	for _, d := range cfg.Domains {
		n := normalizeHost(d)
		m.cfg.Domains = append(m.cfg.Domains, n)
		m.domains[n] = true
	}
	switch {
	case cfg.Storage != "":
		m.storage = cfg.Storage.String()
	case opts.StateDir != "":
		m.storage = filepath.Join(opts.StateDir, "acme")
	default:
		return nil, conf.Errorf("acme.storage", "required when no state directory is set")
	}
	if cfg.CARoot != "" {
		path := cfg.CARoot.String()
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("acme: reading ca_root: %w", err)
		}
		if m.roots, err = x509.SystemCertPool(); err != nil || m.roots == nil {
			m.roots = x509.NewCertPool()
		}
		if !m.roots.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("acme: ca_root %s: no PEM certificate", path)
		}
	}
	return m, nil
}

// start builds certmagic's cache and config (which starts its maintenance
// goroutine) and begins managing the domains in the background.
func (m *acmeManager) start(ctx context.Context) (*acmeRuntime, error) {
	zl := zapLogger(m.opts.logger().With("component", "acme"))
	rt := &acmeRuntime{}
	rt.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return rt.magic, nil
		},
		RenewCheckInterval: m.opts.ACMERenewCheck,
		Logger:             zl,
	})
	rt.magic = certmagic.New(rt.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: m.storage},
		Logger:  zl,
	})
	rt.issuer = certmagic.NewACMEIssuer(rt.magic, certmagic.ACMEIssuer{
		CA:                      m.cfg.CA,
		TestCA:                  m.cfg.CA, // no separate staging run unless the CA is Let's Encrypt's default
		Email:                   m.cfg.Email,
		Agreed:                  true,
		Profile:                 m.cfg.Profile,
		DisableHTTPChallenge:    !m.cfg.challenge(ChallengeHTTP01),
		DisableTLSALPNChallenge: !m.cfg.challenge(ChallengeTLSALPN01),
		AltHTTPPort:             m.cfg.HTTPPort,
		AltTLSALPNPort:          m.cfg.TLSALPNPort,
		TrustedRoots:            m.roots,
		Logger:                  zl,
	})
	rt.magic.Issuers = []certmagic.Issuer{rt.issuer}
	if err := rt.magic.ManageAsync(ctx, m.cfg.Domains); err != nil {
		rt.cache.Stop()
		return nil, fmt.Errorf("acme: managing %v: %w", m.cfg.Domains, err)
	}
	m.rt.Store(rt)
	return rt, nil
}

// handles tells whether the ACME part answers this ClientHello: an ACME
// domain, or a tls-alpn-01 challenge.
func (m *acmeManager) handles(hello *tls.ClientHelloInfo) bool {
	if m.domains[normalizeHost(hello.ServerName)] {
		return true
	}
	return m.cfg.challenge(ChallengeTLSALPN01) && slices.Contains(hello.SupportedProtos, alpnACMETLS1)
}

// getCertificate returns certmagic's certificate for hello; nil when
// Run has not started ACME yet.
func (m *acmeManager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	rt := m.rt.Load()
	if rt == nil {
		return nil, errors.New("certs: ACME not started")
	}
	return rt.magic.GetCertificate(hello)
}

// leafs describes the ACME certificates in the cache.
func (m *acmeManager) leafs() []LeafInfo {
	rt := m.rt.Load()
	if rt == nil {
		return nil
	}
	var out []LeafInfo
	for _, d := range m.cfg.Domains {
		for _, c := range rt.cache.AllMatchingCertificates(d) {
			if c.Leaf == nil {
				continue
			}
			out = append(out, LeafInfo{Source: "acme:" + d, Names: slices.Clone(c.Names), Serial: serialHex(c.Leaf.SerialNumber), NotAfter: c.Leaf.NotAfter})
		}
	}
	return out
}

// IsTLSALPNChallenge tells whether hello is an ACME tls-alpn-01
// validation this ServerCerts answers. The validator sends no client
// certificate: a listener that requires one must not require it for such a
// hello (in GetConfigForClient), or the challenge fails.
func (s *ServerCerts) IsTLSALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return s.acme != nil && s.acme.cfg.challenge(ChallengeTLSALPN01) && slices.Contains(hello.SupportedProtos, alpnACMETLS1)
}

// NextProtos returns the ALPN protocols the TLS configurations must offer
// beside h2 and http/1.1: "acme-tls/1" when the tls-alpn-01 challenge is
// on. crypto/tls only calls GetCertificate for a challenge if the
// protocol is offered.
func (s *ServerCerts) NextProtos() []string {
	if s.acme != nil && s.acme.cfg.challenge(ChallengeTLSALPN01) {
		return []string{alpnACMETLS1}
	}
	return nil
}

// HTTPChallengeHandler wraps the handler of the plain-HTTP listener so
// that it answers ACME http-01 challenges
// (/.well-known/acme-challenge/...) and passes everything else to next.
// Without ACME, or with http-01 off, it returns next.
func (s *ServerCerts) HTTPChallengeHandler(next http.Handler) http.Handler {
	if s.acme == nil || !s.acme.cfg.challenge(ChallengeHTTP01) {
		return next
	}
	m := s.acme
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt := m.rt.Load(); rt != nil && rt.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

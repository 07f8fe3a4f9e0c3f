package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"portcullis/internal/conf"
)

// serverPollInterval is how often [ServerCerts.Run] looks at the files.
const serverPollInterval = 2 * time.Second

// ServerConfig is the `tls:` section of the configuration file: the
// gateway's own certificates.
type ServerConfig struct {
	// Certificates are PEM certificate chain and key files, re-read when they change. The SNI a client sends picks one (exact
	// name, then wildcard, then IP address); the first is the fallback.
	Certificates []CertificateFiles `yaml:"certificates"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"min_version"`
	// ACME gets and renews certificates for some host names from an ACME
	// CA. Those names are served from ACME; every other name from
	// Certificates. Optional.
	ACME *ACMEConfig `yaml:"acme"`
}

// CertificateFiles is one certificate and its key.
type CertificateFiles struct {
	// Cert is a PEM file: the leaf first, then its intermediates.
	Cert conf.Path `yaml:"cert"`
	// Key is the PEM private key of the leaf.
	Key conf.Path `yaml:"key"`
}

// Validate reports every problem, each naming its key.
func (c *ServerConfig) Validate() error {
	var errs []error
	for i, f := range c.Certificates {
		if f.Cert == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("certificates[%d].cert", i), "required"))
		}
		if f.Key == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("certificates[%d].key", i), "required"))
		}
	}
	switch c.MinVersion {
	case "", "1.2", "1.3":
	default:
		errs = append(errs, conf.Errorf("min_version", "unknown TLS version %q (want 1.2 or 1.3)", c.MinVersion))
	}
	if c.ACME != nil {
		errs = append(errs, conf.AtKey("acme", c.ACME.Validate()))
	}
	return errors.Join(errs...)
}

// TLSMinVersion returns MinVersion as a crypto/tls constant.
func (c *ServerConfig) TLSMinVersion() uint16 {
	if c.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// ErrNoServerCertificate says no server certificate is loaded.
var ErrNoServerCertificate = errors.New("certs: no server certificate")

// ServerCerts holds the gateway's certificates and picks one per
// handshake. It is safe for concurrent use; the set in use is swapped
// whole on reload.
type ServerCerts struct {
	log   *slog.Logger
	files []CertificateFiles
	acme  *acmeManager // nil: no ACME

	cur atomic.Pointer[serverSet]

	// mu serializes reloads and additions, and protects the following.
	mu     sync.Mutex
	loaded []*tls.Certificate // from files, in configuration order
	stamps [][2]fileStamp     // per file pair, as last tried
	added  []*tls.Certificate // from AddCertificate
}

// A serverSet is an immutable index of certificates by name.
type serverSet struct {
	all      []*tls.Certificate // files first, then added ones
	sources  []string
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // "*.example.com" under "example.com"
	ips      map[netip.Addr]*tls.Certificate
}

// NewServerCerts validates cfg and loads its certificate files. It starts
// nothing; call [ServerCerts.Run] to follow file changes.
func NewServerCerts(cfg ServerConfig, opts Options) (*ServerCerts, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &ServerCerts{log: opts.logger()}
	s.files = slices.Clone(cfg.Certificates)
	if cfg.ACME != nil {
		m, err := newACMEManager(*cfg.ACME, opts)
		if err != nil {
			return nil, err
		}
		s.acme = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(false); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate is for [crypto/tls.Config.GetCertificate]: it picks the
// certificate whose DNS name equals the SNI, then one with a matching
// wildcard, then one whose IP address is the SNI or the local address, and
// otherwise the first.
//
// ACME host names, and tls-alpn-01 challenges, are answered from ACME's
// certificates first; while ACME has none for a name yet (or before
// [ServerCerts.Run] started it), the certificate files answer.
func (s *ServerCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.cur.Load()
	if s.acme != nil && s.acme.handles(hello) {
		c, err := s.acme.getCertificate(hello)
		if err == nil {
			return c, nil
		}
		if len(set.all) == 0 || slices.Contains(hello.SupportedProtos, alpnACMETLS1) {
			return nil, err
		}
	}
	if len(set.all) == 0 {
		return nil, ErrNoServerCertificate
	}
	name := strings.TrimSuffix(hello.ServerName, ".")
	if name != "" {
		name = strings.ToLower(name)
		if c := set.exact[name]; c != nil {
			return c, nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := set.wildcard[name[i+1:]]; c != nil {
				return c, nil
			}
		}
		if ip, err := netip.ParseAddr(name); err == nil {
			if c := set.ips[ip.Unmap()]; c != nil {
				return c, nil
			}
		}
	}
	if hello.Conn != nil {
		if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				if c := set.ips[ip.Unmap()]; c != nil {
					return c, nil
				}
			}
		}
	}
	return set.all[0], nil
}

// AddCertificate adds a certificate that has no file, such as one the dev
// CA generated. It is chosen after the file certificates with the same
// name, and survives reloads.
func (s *ServerCerts) AddCertificate(c tls.Certificate) error {
	if len(c.Certificate) == 0 || c.PrivateKey == nil {
		return errors.New("certs: certificate without a chain or key")
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return fmt.Errorf("certs: parsing added certificate: %w", err)
		}
		c.Leaf = leaf
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.added = append(s.added, &c)
	s.cur.Store(s.buildLocked())
	return nil
}

// Reload re-reads every certificate file. On any error the certificates in
// use stay, and the error says which file failed.
func (s *ServerCerts) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(false)
}

// Run polls the certificate files every 2 seconds and reloads them when
// one changed, until ctx ends. With ACME, it also starts certmagic: the
// certificates in storage are loaded, missing ones obtained in the
// background, and certmagic's maintenance renews them and refreshes their
// OCSP staples; it stops when ctx ends. A certificate already obtained is
// served, and kept, while the ACME CA cannot be reached.
func (s *ServerCerts) Run(ctx context.Context) error {
	if s.acme != nil {
		rt, err := s.acme.start(ctx)
		if err != nil {
			return err
		}
		defer func() {
			s.acme.rt.Store(nil)
			rt.cache.Stop()
		}()
	}
	t := time.NewTicker(serverPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll()
		}
	}
}

// poll reloads the files if any changed since last tried.
func (s *ServerCerts) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(true); err != nil {
		s.log.Error("reloading server certificates; keeping the previous ones", "error", err)
	}
}

// reloadLocked loads every file pair; with onlyChanged it does nothing
// unless a file changed since last tried.
func (s *ServerCerts) reloadLocked(onlyChanged bool) error {
	stamps := make([][2]fileStamp, len(s.files))
	changed := len(s.stamps) != len(s.files)
	for i, f := range s.files {
		stamps[i] = [2]fileStamp{stampOf(f.Cert.String()), stampOf(f.Key.String())}
		changed = changed || stamps[i] != s.stamps[i]
	}
	if onlyChanged && !changed {
		return nil
	}
	s.stamps = stamps
	loaded := make([]*tls.Certificate, 0, len(s.files))
	var errs []error
	for i, f := range s.files {
		c, err := loadKeyPair(f)
		if err != nil {
			errs = append(errs, conf.AtKey(fmt.Sprintf("certificates[%d]", i), err))
			continue
		}
		loaded = append(loaded, c)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.loaded = loaded
	s.cur.Store(s.buildLocked())
	if onlyChanged {
		s.log.Info("reloaded server certificates", "certificates", len(loaded))
	}
	return nil
}

func loadKeyPair(f CertificateFiles) (*tls.Certificate, error) {
	certPEM, err := readFile(f.Cert.String())
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := readFile(f.Key.String())
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
	}
	return &c, nil
}

// buildLocked indexes the loaded and added certificates; the first
// certificate naming a host wins.
func (s *ServerCerts) buildLocked() *serverSet {
	set := &serverSet{
		exact:    map[string]*tls.Certificate{},
		wildcard: map[string]*tls.Certificate{},
		ips:      map[netip.Addr]*tls.Certificate{},
	}
	add := func(c *tls.Certificate, source string) {
		set.all = append(set.all, c)
		set.sources = append(set.sources, source)
		for _, n := range c.Leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m, k := set.exact, n
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, k = set.wildcard, rest
			}
			if _, dup := m[k]; !dup {
				m[k] = c
			}
		}
		for _, ip := range c.Leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				if _, dup := set.ips[a.Unmap()]; !dup {
					set.ips[a.Unmap()] = c
				}
			}
		}
	}
	for i, c := range s.loaded {
		add(c, s.files[i].Cert.String())
	}
	for _, c := range s.added {
		add(c, "added")
	}
	return set
}

// LeafInfo describes a server certificate in use, for metrics and the
// admin API.
type LeafInfo struct {
	Source   string    `json:"source"` // the certificate file, "acme:<name>" or "added"
	Names    []string  `json:"names"`
	Serial   string    `json:"serial"` // lower-case hex
	NotAfter time.Time `json:"not_after"`
}

// Leafs describes the certificates in use: ACME's (source "acme:<name>")
// first, then the files' and added ones in selection order.
func (s *ServerCerts) Leafs() []LeafInfo {
	set := s.cur.Load()
	out := make([]LeafInfo, len(set.all))
	for i, c := range set.all {
		names := append([]string{}, c.Leaf.DNSNames...)
		for _, ip := range c.Leaf.IPAddresses {
			names = append(names, ip.String())
		}
		out[i] = LeafInfo{Source: set.sources[i], Names: names, Serial: serialHex(c.Leaf.SerialNumber), NotAfter: c.Leaf.NotAfter}
	}
	if s.acme != nil {
		out = append(s.acme.leafs(), out...)
	}
	return out
}

package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultTrustDomain is the SPIFFE trust domain of device URIs.
const DefaultTrustDomain = "portcullis.dev"

// caValidity is how long a new CA certificate is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// A CA is a certificate authority whose certificate, key and index of
// issued certificates live in a directory. Its methods are safe for
// concurrent use within one process; two processes must not issue or
// revoke with the same CA at once.
type CA struct {
	// TrustDomain is the SPIFFE trust domain of the device URIs it issues
	// (spiffe://<TrustDomain>/device/<id>). Default [DefaultTrustDomain].
	TrustDomain string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	dir, prefix string
	cert        *x509.Certificate
	certPEM     []byte
	key         *ecdsa.PrivateKey

	mu sync.Mutex // serializes index updates
}

// Init creates a CA named name in dir (files ca.pem, ca.key and
// ca.index.json), or loads the one already there.
func Init(dir, name string) (*CA, error) { return InitFiles(dir, "ca", name) }

// Load loads the CA in dir created by [Init].
func Load(dir string) (*CA, error) { return LoadFiles(dir, "ca") }

// InitFiles is [Init] with the files named <prefix>.pem, <prefix>.key and
// <prefix>.index.json, so that several CAs can share a directory. The
// certificate is a self-signed ECDSA P-256 CA valid for ten years; the key
// file is written with mode 0600.
func InitFiles(dir, prefix, name string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, prefix+".pem")); err == nil {
		return LoadFiles(dir, prefix)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generating key: %w", err)
	}
	now := time.Now()
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Portcullis development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devca: creating CA certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	// The key first: a certificate without its key would be a dead CA.
	if err := writeFile(filepath.Join(dir, prefix+".key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, prefix+".pem"), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	return LoadFiles(dir, prefix)
}

// LoadFiles loads the CA created by [InitFiles] with prefix.
func LoadFiles(dir, prefix string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, prefix+".pem"))
	if err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, prefix+".key"))
	if err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("devca: %s.pem: no certificate", prefix)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: %s.pem: %w", prefix, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("devca: %s.key: no key", prefix)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: %s.key: %w", prefix, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("devca: %s.key does not match %s.pem", prefix, prefix)
	}
	return &CA{dir: dir, prefix: prefix, cert: cert, certPEM: certPEM, key: key}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM, as a trust bundle.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// CertFile returns the path of the CA certificate file.
func (ca *CA) CertFile() string { return filepath.Join(ca.dir, ca.prefix+".pem") }

// KeyFile returns the path of the CA key file.
func (ca *CA) KeyFile() string { return filepath.Join(ca.dir, ca.prefix+".key") }

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// newSerial returns a random positive 127-bit serial number.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("devca: serial: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x01 // never zero, never a leading zero octet
	return new(big.Int).SetBytes(b), nil
}

func marshalKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("devca: encoding key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile writes data to path atomically (a temporary file renamed over
// it) with mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("devca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("devca: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devca: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	return nil
}

package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ErrKeyPermissions is returned by [Open] when the key file is readable
// or writable by group or others.
var ErrKeyPermissions = errors.New("assertion: key file is accessible to group or others")

var errNoKey = errors.New("assertion: no key file")

// maxKeyFile bounds what is read from a key file.
const maxKeyFile = 16 << 10

// signingKey is a private key with what signing needs, built once.
type signingKey struct {
	priv   *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	gen    uint64 // increases with every rotation; cached tokens record it
}

func newSigningKey(priv *ecdsa.PrivateKey, gen uint64) (*signingKey, error) {
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	sig, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.ES256,
		Key:       jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.ES256)},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("assertion: signer: %w", err)
	}
	return &signingKey{priv: priv, kid: kid, signer: sig, gen: gen}, nil
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url
// encoded: a kid that depends only on the key, so it is stable across
// restarts and replicas sharing the key.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	t, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("assertion: thumbprint: %w", err)
	}
	return b64.EncodeToString(t), nil
}

func generateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("assertion: generate key: %w", err)
	}
	return k, nil
}

// loadOrCreateKey reads the P-256 private key at path, or creates and
// saves one if there is none.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := readKeyFile(path)
	if errors.Is(err, errNoKey) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("assertion: %w", err)
		}
		k, err := generateKey()
		if err != nil {
			return nil, err
		}
		if err := saveKey(path, k); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("assertion: %s: no PRIVATE KEY block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("assertion: %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("assertion: %s: not an ECDSA P-256 key", path)
	}
	return ec, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKeyPermissions, path, fi.Mode().Perm())
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("assertion: %s: larger than %d bytes", path, maxKeyFile)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	return data, nil
}

// saveKey writes k to path as PKCS #8 PEM, mode 0600, atomically.
func saveKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// retiredHeader is the PEM header that records until when a retired key
// must stay published.
const retiredHeader = "Published-Until"

// saveRetiredKey writes the public half of a retired key, with the time
// until which it stays in the JWKS.
func saveRetiredKey(path string, r *retiredKey) error {
	der, err := x509.MarshalPKIXPublicKey(r.pub)
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{
		Type:    "PUBLIC KEY",
		Headers: map[string]string{retiredHeader: r.until.UTC().Format(time.RFC3339)},
		Bytes:   der,
	}))
}

func loadRetiredKey(path string) (*retiredKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("assertion: %s: no PUBLIC KEY block", path)
	}
	until, err := time.Parse(time.RFC3339, block.Headers[retiredHeader])
	if err != nil {
		return nil, fmt.Errorf("assertion: %s: %s header: %w", path, retiredHeader, err)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("assertion: %s: %w", path, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("assertion: %s: not an ECDSA P-256 key", path)
	}
	kid, err := thumbprint(ec)
	if err != nil {
		return nil, err
	}
	return &retiredKey{pub: ec, kid: kid, until: until}, nil
}

// writeFileAtomic writes data to a temporary file beside path, mode 0600,
// syncs it and renames it over path, so a reader never sees half a key.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".assertion-key-*")
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("assertion: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("assertion: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("assertion: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	return nil
}

package saml

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// loadKeyPair reads the SP key and certificate, or, when both paths are
// empty, reads or creates saml-NAME.key and saml-NAME.crt in stateDir.
func loadKeyPair(keyFile, certFile, stateDir, name string) (*rsa.PrivateKey, *x509.Certificate, error) {
	if keyFile == "" && certFile == "" {
		if stateDir == "" {
			return nil, nil, errors.New("no key_file and no state directory to create one in")
		}
		keyFile = filepath.Join(stateDir, "saml-"+name+".key")
		certFile = filepath.Join(stateDir, "saml-"+name+".crt")
		if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
			if err := generateKeyPair(keyFile, certFile, name); err != nil {
				return nil, nil, err
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("loading SP key pair: %w", err)
	}
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("SP key must be RSA (encrypted assertions use RSA key transport)")
	}
	if key.N.BitLen() < 2048 {
		return nil, nil, fmt.Errorf("SP RSA key has %d bits, want at least 2048", key.N.BitLen())
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("parsing SP certificate: %w", err)
	}
	return key, cert, nil
}

// generateKeyPair writes a new RSA-3072 key and a ten-year self-signed
// certificate: SAML peers pin the certificate, its validity is not checked.
func generateKeyPair(keyFile, certFile, name string) error {
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "portcullis saml sp " + name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeNew(keyFile, kb, 0o600); err != nil {
		return err
	}
	return writeNew(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

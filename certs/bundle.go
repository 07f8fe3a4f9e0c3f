package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

var errTooLarge = errors.New("file too large")

// parseBundle parses a PEM bundle of CA certificates. Text between blocks
// (openssl's "subject=" lines) is allowed; a block that is not a
// certificate, a certificate that is not a CA, a weak key or a bundle with
// no certificate at all is an error.
func parseBundle(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate", len(out)+1, c.Subject)
		}
		if err := checkKey(c); err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %w", len(out)+1, c.Subject, err)
		}
		out = append(out, c)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, errors.New("bad PEM block")
	}
	if len(out) == 0 {
		return nil, errors.New("no CA certificate")
	}
	return out, nil
}

package certs

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// minRSABits is the smallest RSA modulus accepted anywhere in a device
// certificate chain.
const minRSABits = 2048

// checkKey rejects RSA keys under 2048 bits or whose size is not a whole
// number of octets, and DSA keys.
func checkKey(c *x509.Certificate) error {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits (want at least %d)", k.N.BitLen(), minRSABits)
		}
		if k.N.BitLen()%8 != 0 {
			// Web PKI forbids these; no real CA or device makes them.
			return fmt.Errorf("RSA key of %d bits (not a multiple of 8)", k.N.BitLen())
		}
	}
	if c.PublicKeyAlgorithm == x509.DSA {
		return errors.New("DSA key")
	}
	return nil
}

// checkSerial enforces RFC 5280 §4.1.2.2: a positive serial number of at
// most 20 octets as DER encodes it (with its sign octet).
func checkSerial(c *x509.Certificate) error {
	s := c.SerialNumber
	if s == nil || s.Sign() <= 0 {
		return errors.New("serial number is not positive")
	}
	n := (s.BitLen() + 8) / 8 // octets including the sign bit
	if n > 20 {
		return fmt.Errorf("serial number of %d octets (at most 20)", n)
	}
	return nil
}

// checkLeaf applies the device-certificate profile to the leaf.
func checkLeaf(c *x509.Certificate) *VerifyError {
	if c.BasicConstraintsValid && c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
		return verifyErr(CodeCAAsLeaf, errors.New("the leaf is a CA certificate"))
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return verifyErr(CodeBadEKU, errors.New("the leaf has no clientAuth extended key usage"))
	}
	if err := checkSerial(c); err != nil {
		return verifyErr(CodeBadSerial, err)
	}
	return nil
}

// chainDepth counts the leaf and the intermediates of a verified chain
// (which ends with its trust anchor), not counting self-issued
// intermediates, as RFC 5280 path length constraints do not.
func chainDepth(ch []*x509.Certificate) int {
	if len(ch) <= 2 {
		return 1
	}
	depth := 1
	for _, c := range ch[1 : len(ch)-1] {
		if !bytes.Equal(c.RawSubject, c.RawIssuer) {
			depth++
		}
	}
	return depth
}

// classify turns an error of [x509.Certificate.Verify] into a
// [VerifyError]. at is the time the chain was verified at.
func classify(err error, at time.Time) *VerifyError {
	var cie x509.CertificateInvalidError
	if errors.As(err, &cie) {
		switch cie.Reason {
		case x509.Expired:
			if cie.Cert != nil && at.Before(cie.Cert.NotBefore) {
				return verifyErr(CodeNotYetValid, err)
			}
			return verifyErr(CodeExpired, err)
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return verifyErr(CodeBadEKU, err)
		case x509.TooManyIntermediates:
			return verifyErr(CodeChainTooDeep, err)
		}
	}
	return verifyErr(CodeUnknownCA, err)
}

// serialHex formats a serial number as lower-case hex without leading
// zeros, the form [DeviceIdentity.Serial] and revocation callbacks use.
func serialHex(s *big.Int) string {
	if s == nil {
		return ""
	}
	return s.Text(16)
}

// moreSpecific reports whether a is a more useful error to report than b
// when several CAs reject a chain: any reason beats "unknown_ca".
func moreSpecific(a, b *VerifyError) bool {
	return b == nil || b.Code == CodeUnknownCA && a.Code != CodeUnknownCA
}

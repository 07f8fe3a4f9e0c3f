package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
)

// FuzzExtractIdentity feeds random bytes as a certificate and as a SAN
// extension to the identity rules: they must never panic, and a value they
// return must satisfy the rule.
func FuzzExtractIdentity(f *testing.F) {
	root := newRoot(f, "Root")
	leaf := root.leaf(f, withSAN(sanExt(f, []string{"urn:uuid:" + testDeviceID}, []string{"a@example.com"}, []string{"d.example"}, []string{"u@corp.example"})))
	f.Add(leaf.Raw)
	f.Add(sanExt(f, []string{"urn:uuid:" + testDeviceID, "urn:uuid:x"}, nil, nil, []string{"ü@corp.example"}))
	f.Add([]byte{0x30, 0x03, 0xa0, 0x01, 0x00})
	f.Add([]byte{})
	rules := []*rule{}
	for _, from := range fromKinds {
		r, err := (&IdentityRule{From: from}).compile()
		if err != nil {
			f.Fatal(err)
		}
		rules = append(rules, r)
		r, err = (&IdentityRule{From: from, Pattern: `^(?:urn:uuid:)?([^@]+)`}).compile()
		if err != nil {
			f.Fatal(err)
		}
		rules = append(rules, r)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		certs := []*x509.Certificate{}
		if c, err := x509.ParseCertificate(b); err == nil {
			certs = append(certs, c)
		}
		// The bytes as the SAN extension of an otherwise good certificate.
		certs = append(certs, &x509.Certificate{Extensions: append(leaf.Extensions[:0:0], leafSAN(b))})
		if _, err := parseSANs(b); err != nil && !strings.Contains(err.Error(), "subject alternative name") && !strings.Contains(err.Error(), "otherName") && !strings.Contains(err.Error(), "UPN") {
			t.Errorf("parseSANs error does not say what failed: %v", err)
		}
		for _, c := range certs {
			for _, r := range rules {
				v, err := r.extract(c)
				if err != nil {
					if codeOf(err) != CodeNoIdentity && codeOf(err) != CodeAmbiguousIdentity {
						t.Errorf("extract error %v has no identity code", err)
					}
					continue
				}
				if v == "" || !printableUTF8(v) {
					t.Errorf("extract returned %q", v)
				}
			}
		}
	})
}

func FuzzParseUPN(f *testing.F) {
	f.Add(otherNameUPN(f, "user@corp.example"))
	f.Add(otherNameUPN(f, "ü@corp.example"))
	f.Add(otherNameUPN(f, "a\x00b"))
	f.Add([]byte{0x06, 0x03, 0x2a, 0x03, 0x04, 0xa0, 0x02, 0x0c, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		upn, ok, err := parseOtherNameUPN(b)
		if err != nil && ok {
			t.Fatal("ok with an error")
		}
		if ok && !printableUTF8(upn) {
			t.Errorf("accepted UPN %q with control characters", upn)
		}
	})
}

func FuzzParseCRL(f *testing.F) {
	root := newRoot(f, "Root")
	good := root.crl(f, 7, nil, nil)
	f.Add(good)
	if b, _ := pem.Decode(good); b != nil {
		f.Add(b.Bytes)
	}
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		crls, err := parseCRLs(b)
		if err != nil {
			return
		}
		for _, e := range crls {
			if e.rl.Number == nil || e.rl.NextUpdate.IsZero() {
				t.Fatal("accepted a CRL without a number or nextUpdate")
			}
			_ = e.verifiedBy(root.cert) // must not panic on any parsed CRL
		}
	})
}

func leafSAN(b []byte) pkix.Extension { return pkix.Extension{Id: oidExtSAN, Value: b} }

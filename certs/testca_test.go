package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"portcullis/internal/conf"
)

// testNow is the fixed clock of these tests.
var testNow = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// A testCA is a tiny CA for tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serialCounter int64 = 1000

func nextSerial() *big.Int {
	serialCounter++
	return big.NewInt(serialCounter)
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCreate(t testing.TB, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             testNow.Add(-24 * time.Hour),
		NotAfter:              testNow.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// newRoot makes a self-signed root CA.
func newRoot(t testing.TB, name string) *testCA {
	t.Helper()
	k := newKey(t)
	tmpl := caTemplate(name)
	return &testCA{cert: mustCreate(t, tmpl, tmpl, k.Public(), k), key: k}
}

// sub makes an intermediate CA under ca; mod may change its template.
func (ca *testCA) sub(t testing.TB, name string, mod func(*x509.Certificate)) *testCA {
	t.Helper()
	k := newKey(t)
	tmpl := caTemplate(name)
	if mod != nil {
		mod(tmpl)
	}
	return &testCA{cert: mustCreate(t, tmpl, ca.cert, k.Public(), ca.key), key: k}
}

// leafTemplate is a good device certificate for device id.
func leafTemplate(id string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: "urn", Opaque: "uuid:" + id}},
	}
}

const testDeviceID = "7c2e8f4a-1b3d-4e5f-9a0b-c1d2e3f4a5b6"

// leaf issues a device certificate; mod may change its template.
func (ca *testCA) leaf(t testing.TB, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := leafTemplate(testDeviceID)
	if mod != nil {
		mod(tmpl)
	}
	return mustCreate(t, tmpl, ca.cert, newKey(t).Public(), ca.key)
}

// crl signs a CRL revoking serials; mod may change it.
func (ca *testCA) crl(t testing.TB, number int64, serials []*big.Int, mod func(*x509.RevocationList)) []byte {
	t.Helper()
	rl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: testNow.Add(-time.Hour),
		NextUpdate: testNow.Add(24 * time.Hour),
	}
	for _, s := range serials {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: testNow.Add(-time.Minute)})
	}
	if mod != nil {
		mod(rl)
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// resign re-signs cert with ca after mod edits the elements of its TBS
// (version, serial, signature algorithm, issuer, validity, subject, key,
// extensions), to make certificates crypto/x509 refuses to create.
func (ca *testCA) resign(t testing.TB, cert *x509.Certificate, mod func(tbs []asn1.RawValue)) *x509.Certificate {
	t.Helper()
	var tbs asn1.RawValue
	if _, err := asn1.Unmarshal(cert.RawTBSCertificate, &tbs); err != nil {
		t.Fatal(err)
	}
	var elems []asn1.RawValue
	for rest := tbs.Bytes; len(rest) > 0; {
		var e asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &e); err != nil {
			t.Fatal(err)
		}
		elems = append(elems, e)
	}
	mod(elems)
	var body []byte
	for _, e := range elems {
		body = append(body, e.FullBytes...)
	}
	newTBS, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(newTBS)
	sig, err := ca.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(cert.Raw, &outer); err != nil {
		t.Fatal(err)
	}
	var parts []asn1.RawValue
	for rest := outer.Bytes; len(rest) > 0; {
		var e asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &e); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, e)
	}
	sigBits, err := asn1.Marshal(asn1.BitString{Bytes: sig, BitLength: len(sig) * 8})
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: append(append(append([]byte{}, newTBS...), parts[1].FullBytes...), sigBits...)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sanExt builds a SAN extension with the given names, UPNs included.
func sanExt(t testing.TB, uris, emails, dns, upns []string) []byte {
	t.Helper()
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagURI, Bytes: []byte(u)})
	}
	for _, e := range emails {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagRFC822, Bytes: []byte(e)})
	}
	for _, d := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagDNS, Bytes: []byte(d)})
	}
	for _, u := range upns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagOtherName, IsCompound: true, Bytes: otherNameUPN(t, u)})
	}
	b, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// otherNameUPN encodes the body of a UPN otherName.
func otherNameUPN(t testing.TB, upn string) []byte {
	t.Helper()
	oid, err := asn1.Marshal(oidUPN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(upn)})
	if err != nil {
		t.Fatal(err)
	}
	v, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: s})
	if err != nil {
		t.Fatal(err)
	}
	return append(oid, v...)
}

// withSAN replaces the template's SANs with a hand-built extension.
func withSAN(ext []byte) func(*x509.Certificate) {
	return func(c *x509.Certificate) {
		c.URIs, c.EmailAddresses, c.DNSNames = nil, nil, nil
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidExtSAN, Value: ext})
	}
}

// writePEM writes certificates or raw PEM into dir/name and returns the
// path.
func writePEM(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// a testClock is a settable clock.
type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time { return c.t }

// newTestDevices builds Devices over one CA "test" whose bundle holds
// roots, with the given rules and CRL files, at testNow.
func newTestDevices(t testing.TB, clock *testClock, ca CAConfig, rev RevocationConfig, roots ...*x509.Certificate) *Devices {
	t.Helper()
	dir := t.TempDir()
	if ca.Name == "" {
		ca.Name = "test"
	}
	ca.Bundle = conf.Path(writePEM(t, dir, ca.Name+".pem", certPEM(roots...)))
	if ca.DeviceID.From == "" {
		ca.DeviceID = IdentityRule{From: FromURISAN, Pattern: `^urn:uuid:([0-9a-f-]{36})$`}
	}
	d, err := NewDevices(DevicesConfig{CAs: []CAConfig{ca}, Revocation: rev}, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

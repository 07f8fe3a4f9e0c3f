package certs

import (
	"crypto/x509"
	"testing"

	"portcullis/internal/conf"
)

func benchDevices(b *testing.B) (*Devices, []*x509.Certificate) {
	root := newRoot(b, "Root")
	inter := root.sub(b, "Inter", nil)
	leaf := inter.leaf(b, nil)
	dir := b.TempDir()
	crl := writePEM(b, dir, "crl.pem", inter.crl(b, 1, nil, nil))
	d := newTestDevices(b, &testClock{testNow}, CAConfig{}, RevocationConfig{CRLFiles: []conf.Path{conf.Path(crl)}}, root.cert)
	return d, []*x509.Certificate{leaf, inter.cert}
}

// BenchmarkVerifyCached is the cost of a repeated connection: the
// fingerprint, and a cache lookup.
func BenchmarkVerifyCached(b *testing.B) {
	d, chain := benchDevices(b)
	if _, err := d.Verify(chain, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Verify(chain, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached is the cost of a first connection: chain
// building, signatures, CRL lookup and identity extraction.
func BenchmarkVerifyUncached(b *testing.B) {
	d, chain := benchDevices(b)
	b.ReportAllocs()
	for b.Loop() {
		d.mu.Lock()
		clear(d.cache)
		d.mu.Unlock()
		if _, err := d.Verify(chain, nil); err != nil {
			b.Fatal(err)
		}
	}
}

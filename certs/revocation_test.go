package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

// devicesWithCRLs builds Devices trusting root with CRL files holding crls.
func devicesWithCRLs(t *testing.T, clock *testClock, stale string, root *testCA, crls ...[]byte) (*Devices, []string) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, c := range crls {
		files = append(files, writePEM(t, dir, "crl"+string(rune('a'+i))+".pem", c))
	}
	var paths []conf.Path
	for _, f := range files {
		paths = append(paths, conf.Path(f))
	}
	return newTestDevices(t, clock, CAConfig{}, RevocationConfig{CRLFiles: paths, Stale: stale}, root.cert), files
}

func TestCRL(t *testing.T) {
	root := newRoot(t, "Root")
	inter := root.sub(t, "Inter", nil)
	twin := newRoot(t, "Root") // same name, another key
	leaf := root.leaf(t, nil)
	interLeaf := inter.leaf(t, nil)
	noCRLSign := &testCA{cert: mustCreate(t, func() *x509.Certificate {
		c := caTemplate("NoCRLSign")
		c.KeyUsage = x509.KeyUsageCertSign
		return c
	}(), root.cert, inter.key.Public(), root.key), key: inter.key}
	// A twin of noCRLSign that may sign CRLs, with the same name and key.
	noCRLSignTwin := &testCA{cert: mustCreate(t, caTemplate("NoCRLSign"), root.cert, inter.key.Public(), root.key), key: inter.key}
	leafNoCRLSign := noCRLSign.leaf(t, nil)
	after := testNow.Add(48 * time.Hour)

	tests := []struct {
		name  string
		stale string
		now   time.Time
		crls  [][]byte
		chain []*x509.Certificate
		want  string
	}{
		{"not on CRL", "", testNow, [][]byte{root.crl(t, 1, []*big.Int{big.NewInt(1)}, nil)}, []*x509.Certificate{leaf}, ""},
		{"revoked", "", testNow, [][]byte{root.crl(t, 1, []*big.Int{leaf.SerialNumber}, nil)}, []*x509.Certificate{leaf}, CodeRevoked},
		{"newest CRL wins", "", testNow, [][]byte{root.crl(t, 1, []*big.Int{leaf.SerialNumber}, nil), root.crl(t, 2, nil, nil)}, []*x509.Certificate{leaf}, ""},
		{"other issuer's CRL", "", testNow, [][]byte{inter.crl(t, 1, []*big.Int{leaf.SerialNumber}, nil)}, []*x509.Certificate{leaf}, ""},
		{"revoked intermediate", "", testNow, [][]byte{root.crl(t, 1, []*big.Int{inter.cert.SerialNumber}, nil)}, []*x509.Certificate{interLeaf, inter.cert}, CodeRevoked},
		{"revoked by intermediate", "", testNow, [][]byte{inter.crl(t, 1, []*big.Int{interLeaf.SerialNumber}, nil)}, []*x509.Certificate{interLeaf, inter.cert}, CodeRevoked},
		{"stale deny", "deny", after, [][]byte{root.crl(t, 1, nil, func(rl *x509.RevocationList) { rl.NextUpdate = testNow.Add(time.Hour) })},
			[]*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.NotAfter = after.Add(time.Hour) })}, CodeCRLStale},
		{"stale default deny", "", after, [][]byte{root.crl(t, 1, nil, func(rl *x509.RevocationList) { rl.NextUpdate = testNow.Add(time.Hour) })},
			[]*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.NotAfter = after.Add(time.Hour) })}, CodeCRLStale},
		{"stale allow", "allow", after, [][]byte{root.crl(t, 1, nil, func(rl *x509.RevocationList) { rl.NextUpdate = testNow.Add(time.Hour) })},
			[]*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.NotAfter = after.Add(time.Hour) })}, ""},
		{"stale allow still revokes", "allow", testNow, [][]byte{root.crl(t, 1, []*big.Int{leaf.SerialNumber}, func(rl *x509.RevocationList) {
			rl.ThisUpdate, rl.NextUpdate = testNow.Add(-2*time.Hour), testNow.Add(-time.Hour)
		})}, []*x509.Certificate{leaf}, CodeRevoked},
		{"CRL signed by another key", "", testNow, [][]byte{twin.crl(t, 1, nil, nil)}, []*x509.Certificate{leaf}, CodeCRLInvalid},
		{"issuer without cRLSign", "", testNow, [][]byte{noCRLSignTwin.crl(t, 1, nil, nil)}, []*x509.Certificate{leafNoCRLSign, noCRLSign.cert}, CodeCRLInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := devicesWithCRLs(t, &testClock{tt.now}, tt.stale, root, tt.crls...)
			_, err := d.Verify(tt.chain, nil)
			if got := codeOf(err); got != tt.want {
				t.Errorf("Verify code = %q, want %q (err %v)", got, tt.want, err)
			}
		})
	}
}

func TestCRLStaleAfterCache(t *testing.T) {
	root := newRoot(t, "Root")
	leaf := root.leaf(t, func(c *x509.Certificate) { c.NotAfter = testNow.Add(72 * time.Hour) })
	clock := &testClock{testNow}
	d, _ := devicesWithCRLs(t, clock, "", root, root.crl(t, 1, nil, nil))
	if _, err := d.Verify([]*x509.Certificate{leaf}, nil); err != nil {
		t.Fatal(err)
	}
	clock.t = testNow.Add(25 * time.Hour) // past nextUpdate
	if _, err := d.Verify([]*x509.Certificate{leaf}, nil); codeOf(err) != CodeCRLStale {
		t.Errorf("cached Verify past nextUpdate = %v, want crl_stale", err)
	}
}

func TestCRLReload(t *testing.T) {
	root := newRoot(t, "Root")
	leaf := root.leaf(t, nil)
	d, files := devicesWithCRLs(t, &testClock{testNow}, "", root, root.crl(t, 1, nil, nil))
	var got [][]string
	d.OnRevoked(func(s []string) { got = append(got, s) })
	chain := []*x509.Certificate{leaf}
	if _, err := d.Verify(chain, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil || len(got) != 0 {
		t.Fatalf("Reload without change = %v, callbacks %v", err, got)
	}

	// A broken file keeps the old CRLs.
	writeAndTouch(t, files[0], []byte("garbage"), 1)
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), files[0]) {
		t.Errorf("Reload of a broken CRL = %v, want an error naming the file", err)
	}
	if err := d.reload(true); err != nil {
		t.Errorf("polling a broken CRL that was already reported = %v, want nil", err)
	}
	if _, err := d.Verify(chain, nil); err != nil {
		t.Errorf("Verify after a failed reload = %v", err)
	}

	writeAndTouch(t, files[0], root.crl(t, 2, []*big.Int{leaf.SerialNumber, big.NewInt(77)}, nil), 2)
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	want := []string{"4d", leaf.SerialNumber.Text(16)}
	slices.Sort(want)
	if len(got) != 1 || !slices.Equal(got[0], want) {
		t.Errorf("OnRevoked got %v, want [%v]", got, want)
	}
	before := d.verifications.Load()
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeRevoked {
		t.Errorf("Verify after the revoking reload = %v, want revoked", err)
	}
	if d.verifications.Load() != before+1 {
		t.Error("Verify after a reload hit the cache")
	}
}

// writeAndTouch writes data and moves the modification time forward, so
// that a reload sees a change even within the file system's resolution.
func writeAndTouch(t *testing.T, path string, data []byte, n int) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(time.Duration(n) * time.Minute)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestParseCRLErrors(t *testing.T) {
	root := newRoot(t, "Root")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("garbage"), "malformed"},
		{"wrong block", certPEM(root.cert), "unexpected PEM block"},
		{"critical extension", root.crl(t, 1, nil, func(rl *x509.RevocationList) {
			rl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0}}}
		}), "critical extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCRLs(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseCRLs = %v, want an error with %q", err, tt.want)
			}
		})
	}
	if _, err := parseCRLs(root.crl(t, 1, nil, nil)); err != nil {
		t.Errorf("parseCRLs(good) = %v", err)
	}
}

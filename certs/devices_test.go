package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

func codeOf(err error) string {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestVerifyGood(t *testing.T) {
	root := newRoot(t, "Device Root")
	leaf := root.leaf(t, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: oidExtSAN, Value: sanExt(t, []string{"urn:uuid:" + testDeviceID}, nil, nil, []string{"J.Doe@Acme.Example"})}}
		c.URIs = nil
	})
	clock := &testClock{testNow}
	d := newTestDevices(t, clock, CAConfig{User: &IdentityRule{From: FromUPNSAN}}, RevocationConfig{}, root.cert)
	id, err := d.Verify([]*x509.Certificate{leaf}, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.CA != "test" || id.DeviceID != testDeviceID || id.User != "j.doe@acme.example" {
		t.Errorf("identity = %q/%q/%q, want test/%s/j.doe@acme.example", id.CA, id.DeviceID, id.User, testDeviceID)
	}
	if id.Serial != leaf.SerialNumber.Text(16) || id.NotAfter != leaf.NotAfter || len(id.Fingerprint) != 64 {
		t.Errorf("identity metadata = %+v", id)
	}
	if got := d.Names(); len(got) != 1 || got[0] != "test" {
		t.Errorf("Names = %v", got)
	}
	if n := len(d.Pool(nil).Subjects()); n != 1 { //nolint:staticcheck // counting is all we do
		t.Errorf("Pool has %d certificates, want 1", n)
	}
}

func TestVerifyErrors(t *testing.T) {
	root := newRoot(t, "Device Root")
	other := newRoot(t, "Other Root")
	inter1 := root.sub(t, "Inter 1", nil)
	inter2 := inter1.sub(t, "Inter 2", nil)
	inter3 := inter2.sub(t, "Inter 3", nil)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakLeaf := mustCreate(t, leafTemplate(testDeviceID), root.cert, &weak.PublicKey, root.key)
	good := root.leaf(t, nil)
	old := root.sub(t, "Old", func(c *x509.Certificate) { c.NotAfter = testNow.Add(-time.Minute) })
	oldLeaf := old.leaf(t, func(c *x509.Certificate) { c.NotBefore = testNow.Add(-48 * time.Hour) })
	withSerial := func(serial []byte) *x509.Certificate {
		return root.resign(t, good, func(tbs []asn1.RawValue) {
			b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagInteger, Bytes: serial})
			if err != nil {
				t.Fatal(err)
			}
			tbs[1] = asn1.RawValue{FullBytes: b}
		})
	}
	long := append([]byte{0x01}, make([]byte, 20)...) // 21 octets
	max := append([]byte{0x7f}, make([]byte, 19)...)  // 20 octets: fine
	var longChain []*x509.Certificate
	longChain = append(longChain, good)
	for range 16 {
		longChain = append(longChain, inter1.cert)
	}

	tests := []struct {
		name  string
		chain []*x509.Certificate
		now   time.Time
		want  string
	}{
		{"good", []*x509.Certificate{good}, testNow, ""},
		{"unknown ca", []*x509.Certificate{other.leaf(t, nil)}, testNow, CodeUnknownCA},
		{"expired unknown ca", []*x509.Certificate{other.leaf(t, nil)}, testNow.Add(48 * time.Hour), CodeUnknownCA},
		{"no certificate", nil, testNow, CodeUnknownCA},
		{"expired", []*x509.Certificate{good}, testNow.Add(48 * time.Hour), CodeExpired},
		{"not yet valid", []*x509.Certificate{good}, testNow.Add(-48 * time.Hour), CodeNotYetValid},
		{"expired intermediate", []*x509.Certificate{oldLeaf, old.cert}, testNow, CodeExpired},
		{"intermediate not sent", []*x509.Certificate{oldLeaf}, testNow, CodeUnknownCA},
		{"server eku", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })}, testNow, CodeBadEKU},
		{"no eku", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.ExtKeyUsage = nil })}, testNow, CodeBadEKU},
		{"any eku", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })}, testNow, CodeBadEKU},
		{"depth 4 ok", []*x509.Certificate{inter3.leaf(t, nil), inter3.cert, inter2.cert, inter1.cert}, testNow, ""},
		{"too many presented", longChain, testNow, CodeChainTooDeep},
		{"ca as leaf", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
		})}, testNow, CodeCAAsLeaf},
		{"weak key", []*x509.Certificate{weakLeaf}, testNow, CodeWeakKey},
		{"zero serial", []*x509.Certificate{withSerial([]byte{0})}, testNow, CodeBadSerial},
		{"21 octet serial", []*x509.Certificate{withSerial(long)}, testNow, CodeBadSerial},
		{"20 octet serial", []*x509.Certificate{withSerial(max)}, testNow, ""},
		{"no identity", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) { c.URIs = nil })}, testNow, CodeNoIdentity},
		{"ambiguous identity", []*x509.Certificate{root.leaf(t, func(c *x509.Certificate) {
			c.URIs = append(c.URIs, &url.URL{Scheme: "urn", Opaque: "uuid:00000000-1b3d-4e5f-9a0b-c1d2e3f4a5b6"})
		})}, testNow, CodeAmbiguousIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &testClock{tt.now}
			d := newTestDevices(t, clock, CAConfig{}, RevocationConfig{}, root.cert)
			_, err := d.Verify(tt.chain, nil)
			if got := codeOf(err); got != tt.want {
				t.Errorf("Verify code = %q, want %q (err %v)", got, tt.want, err)
			}
		})
	}
}

func TestChainDepth(t *testing.T) {
	root := newRoot(t, "Root")
	i1 := root.sub(t, "I1", nil)
	i2 := i1.sub(t, "I2", nil)
	// A self-issued intermediate (same name, new key) does not count.
	i2b := i2.sub(t, "I2", nil)
	leaf2 := i2.leaf(t, nil)
	leafSelf := i2b.leaf(t, nil)
	tests := []struct {
		name  string
		depth int
		chain []*x509.Certificate
		want  string
	}{
		{"leaf and two intermediates at 3", 3, []*x509.Certificate{leaf2, i2.cert, i1.cert}, ""},
		{"leaf and two intermediates at 2", 2, []*x509.Certificate{leaf2, i2.cert, i1.cert}, CodeChainTooDeep},
		{"self-issued at 3", 3, []*x509.Certificate{leafSelf, i2b.cert, i2.cert, i1.cert}, ""},
		{"leaf only at 1", 1, []*x509.Certificate{root.leaf(t, nil)}, ""},
		{"missing intermediate", 4, []*x509.Certificate{leaf2, i2.cert}, CodeUnknownCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDevices(t, &testClock{testNow}, CAConfig{MaxChainDepth: tt.depth}, RevocationConfig{}, root.cert)
			_, err := d.Verify(tt.chain, nil)
			if got := codeOf(err); got != tt.want {
				t.Errorf("Verify code = %q, want %q (err %v)", got, tt.want, err)
			}
		})
	}
}

func TestIdentityRules(t *testing.T) {
	root := newRoot(t, "Root")
	const id = testDeviceID
	tests := []struct {
		name     string
		rule     IdentityRule
		user     *IdentityRule
		mod      func(*x509.Certificate)
		wantID   string
		wantUser string
		wantCode string
	}{
		{name: "uri pattern", rule: IdentityRule{From: FromURISAN, Pattern: `^urn:uuid:(.+)$`}, wantID: id},
		{name: "uri whole", rule: IdentityRule{From: FromURISAN}, wantID: "urn:uuid:" + id},
		{name: "intune uri", rule: IdentityRule{From: FromURISAN, Pattern: `^IntuneDeviceId://([0-9a-f-]{36})$`},
			mod: withSAN(sanExt(t, []string{"IntuneDeviceId://" + id, "urn:other"}, nil, nil, nil)), wantID: id},
		{name: "dns", rule: IdentityRule{From: FromDNSSAN, Pattern: `^(.+)\.devices\.example$`},
			mod: func(c *x509.Certificate) { c.DNSNames = []string{"d1.devices.example", "www.example"} }, wantID: "d1"},
		{name: "email user", rule: IdentityRule{From: FromURISAN}, user: &IdentityRule{From: FromEmailSAN},
			mod: func(c *x509.Certificate) { c.EmailAddresses = []string{"Alice@Example.COM"} }, wantID: "urn:uuid:" + id, wantUser: "alice@example.com"},
		{name: "upn user", rule: IdentityRule{From: FromURISAN}, user: &IdentityRule{From: FromUPNSAN},
			mod: withSAN(sanExt(t, []string{"urn:x"}, []string{"mail@example.com"}, nil, []string{"Bob@Corp.Example"})), wantID: "urn:x", wantUser: "bob@corp.example"},
		{name: "missing user is empty", rule: IdentityRule{From: FromURISAN}, user: &IdentityRule{From: FromUPNSAN}, wantID: "urn:uuid:" + id},
		{name: "two users", rule: IdentityRule{From: FromURISAN}, user: &IdentityRule{From: FromEmailSAN},
			mod: func(c *x509.Certificate) { c.EmailAddresses = []string{"a@example.com", "b@example.com"} }, wantCode: CodeAmbiguousIdentity},
		{name: "cn", rule: IdentityRule{From: FromSubjectCN}, wantID: id},
		{name: "ou pattern", rule: IdentityRule{From: FromSubjectOU, Pattern: `^device:(.*)$`},
			mod: func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"staff", "device:abc"} }, wantID: "abc"},
		{name: "pattern matches none", rule: IdentityRule{From: FromURISAN, Pattern: `^spiffe://x/(.+)$`}, wantCode: CodeNoIdentity},
		{name: "pattern matches two", rule: IdentityRule{From: FromURISAN, Pattern: `^urn:uuid:(.+)$`},
			mod: withSAN(sanExt(t, []string{"urn:uuid:a", "urn:uuid:b"}, nil, nil, nil)), wantCode: CodeAmbiguousIdentity},
		{name: "empty capture", rule: IdentityRule{From: FromURISAN, Pattern: `^urn:uuid:(x*)`}, wantCode: CodeNoIdentity},
		{name: "no upn", rule: IdentityRule{From: FromUPNSAN}, wantCode: CodeNoIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := root.leaf(t, tt.mod)
			d := newTestDevices(t, &testClock{testNow}, CAConfig{DeviceID: tt.rule, User: tt.user}, RevocationConfig{}, root.cert)
			id, err := d.Verify([]*x509.Certificate{leaf}, nil)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("Verify code = %q, want %q (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				return
			}
			if id.DeviceID != tt.wantID || id.User != tt.wantUser {
				t.Errorf("identity = %q/%q, want %q/%q", id.DeviceID, id.User, tt.wantID, tt.wantUser)
			}
		})
	}
}

func TestSeveralCAs(t *testing.T) {
	a, b := newRoot(t, "A"), newRoot(t, "B")
	dir := t.TempDir()
	rule := IdentityRule{From: FromSubjectCN}
	d, err := NewDevices(DevicesConfig{CAs: []CAConfig{
		{Name: "a", Bundle: inDir(dir, "a.pem"), DeviceID: rule},
		{Name: "b", Bundle: inDir(dir, "b.pem"), DeviceID: rule},
	}}, Options{Now: (&testClock{testNow}).Now})
	if err == nil {
		t.Fatal("NewDevices without bundle files succeeded")
	}
	writePEM(t, dir, "a.pem", certPEM(a.cert))
	writePEM(t, dir, "b.pem", certPEM(b.cert))
	d, err = NewDevices(DevicesConfig{CAs: []CAConfig{
		{Name: "a", Bundle: inDir(dir, "a.pem"), DeviceID: rule},
		{Name: "b", Bundle: inDir(dir, "b.pem"), DeviceID: rule},
	}}, Options{Now: (&testClock{testNow}).Now})
	if err != nil {
		t.Fatal(err)
	}
	leafB := b.leaf(t, nil)
	tests := []struct {
		cas    []string
		want   string
		wantCA string
	}{
		{nil, "", "b"},
		{[]string{"b"}, "", "b"},
		{[]string{"a"}, CodeUnknownCA, ""},
		{[]string{"nope"}, CodeUnknownCA, ""},
		{[]string{"a", "b"}, "", "b"},
	}
	for _, tt := range tests {
		id, err := d.Verify([]*x509.Certificate{leafB}, tt.cas)
		if got := codeOf(err); got != tt.want {
			t.Errorf("Verify(%v) code = %q, want %q", tt.cas, got, tt.want)
		}
		if err == nil && id.CA != tt.wantCA {
			t.Errorf("Verify(%v) CA = %q, want %q", tt.cas, id.CA, tt.wantCA)
		}
	}
	if n := len(d.Pool([]string{"a"}).Subjects()); n != 1 { //nolint:staticcheck // counting only
		t.Errorf("Pool(a) has %d certificates, want 1", n)
	}
	if n := len(d.Pool(nil).Subjects()); n != 2 { //nolint:staticcheck // counting only
		t.Errorf("Pool(nil) has %d certificates, want 2", n)
	}
}

func TestBundleErrors(t *testing.T) {
	root := newRoot(t, "Root")
	leaf := root.leaf(t, nil)
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "no CA certificate"},
		{"not pem", "hello", "no CA certificate"},
		{"leaf", string(certPEM(leaf)), "not a CA certificate"},
		{"bad block", string(certPEM(root.cert)) + "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", "bad PEM"},
		{"key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "unexpected PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writePEM(t, dir, "b.pem", []byte(tt.data))
			_, err := NewDevices(DevicesConfig{CAs: []CAConfig{{Name: "x", Bundle: inDir(dir, "b.pem"), DeviceID: IdentityRule{From: FromSubjectCN}}}}, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "b.pem") {
				t.Errorf("NewDevices error = %v, want one naming b.pem and saying %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := CAConfig{Name: "ivanti", Bundle: "ca.pem", DeviceID: IdentityRule{From: FromURISAN, Pattern: `^urn:uuid:([0-9a-f-]{36})$`}}
	tests := []struct {
		name string
		cfg  DevicesConfig
		want []string // keys in error, in order
	}{
		{"good", DevicesConfig{CAs: []CAConfig{good}}, nil},
		{"empty", DevicesConfig{}, nil},
		{"bad everything", DevicesConfig{
			CAs:        []CAConfig{{Name: "bad name!", DeviceID: IdentityRule{From: "nope", Pattern: "(a)(b)"}, User: &IdentityRule{From: FromUPNSAN, Pattern: "("}, MaxChainDepth: 99}},
			Revocation: RevocationConfig{Stale: "maybe", CRLFiles: []conf.Path{""}},
		}, []string{"cas[0].name", "cas[0].bundle", "cas[0].device_id.from", "cas[0].device_id.pattern", "cas[0].user.pattern", "cas[0].max_chain_depth", "revocation.stale", "revocation.crl_files[0]"}},
		{"no group", DevicesConfig{CAs: []CAConfig{{Name: "a", Bundle: "x", DeviceID: IdentityRule{From: FromDNSSAN, Pattern: "^x$"}}}}, []string{"cas[0].device_id.pattern"}},
		{"duplicate", DevicesConfig{CAs: []CAConfig{good, good}}, []string{"cas[1].name"}},
		{"missing rule", DevicesConfig{CAs: []CAConfig{{Name: "a", Bundle: "x"}}}, []string{"cas[0].device_id.from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range flatten(tt.cfg.Validate()) {
				got = append(got, strings.SplitN(e.Error(), ":", 2)[0])
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Validate keys = %v, want %v", got, tt.want)
			}
		})
	}
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func TestCache(t *testing.T) {
	root := newRoot(t, "Root")
	leaf := root.leaf(t, nil)
	clock := &testClock{testNow}
	d := newTestDevices(t, clock, CAConfig{}, RevocationConfig{}, root.cert)
	chain := []*x509.Certificate{leaf}
	for range 3 {
		if _, err := d.Verify(chain, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.verifications.Load(); got != 1 {
		t.Errorf("chain verifications after 3 calls = %d, want 1", got)
	}
	if _, err := d.Verify(chain, []string{"test"}); err != nil {
		t.Fatal(err)
	}
	if got := d.verifications.Load(); got != 2 {
		t.Errorf("chain verifications with another CA set = %d, want 2", got)
	}
	clock.t = leaf.NotAfter.Add(time.Second)
	if _, err := d.Verify(chain, nil); codeOf(err) != CodeExpired {
		t.Errorf("Verify after expiry = %v, want expired", err)
	}
	if got := d.verifications.Load(); got != 3 {
		t.Errorf("chain verifications after expiry = %d, want 3", got)
	}

	// Eviction keeps the cache bounded.
	clock.t = testNow
	d.cacheMax = 2
	for range 5 {
		if _, err := d.Verify([]*x509.Certificate{root.leaf(t, nil)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	n := len(d.cache)
	d.mu.Unlock()
	if n > 2 {
		t.Errorf("cache holds %d entries, want at most 2", n)
	}
}

func TestVerifyConnection(t *testing.T) {
	root := newRoot(t, "Root")
	other := newRoot(t, "Other")
	d := newTestDevices(t, &testClock{testNow}, CAConfig{}, RevocationConfig{}, root.cert)
	vc := d.VerifyConnection(nil)
	if err := vc(tls.ConnectionState{}); err != nil {
		t.Errorf("VerifyConnection without a certificate = %v, want nil", err)
	}
	good := tls.ConnectionState{PeerCertificates: []*x509.Certificate{root.leaf(t, nil)}}
	if err := vc(good); err != nil {
		t.Errorf("VerifyConnection(good) = %v", err)
	}
	if err := vc(tls.ConnectionState{PeerCertificates: []*x509.Certificate{other.leaf(t, nil)}}); codeOf(err) != CodeUnknownCA {
		t.Errorf("VerifyConnection(other CA) = %v, want unknown_ca", err)
	}
	id, err := d.Identity(&good, nil)
	if err != nil || id.DeviceID != testDeviceID {
		t.Errorf("Identity = %v, %v", id, err)
	}
	if got := d.verifications.Load(); got != 2 {
		t.Errorf("chain verifications = %d, want 2 (Identity hits the cache)", got)
	}
	if _, err := d.Identity(&tls.ConnectionState{}, nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Identity without a certificate = %v, want ErrNoCertificate", err)
	}
}

func TestCheckKeyDSA(t *testing.T) {
	c := &x509.Certificate{PublicKeyAlgorithm: x509.DSA}
	if err := checkKey(c); err == nil {
		t.Error("checkKey accepted a DSA key")
	}
	c = &x509.Certificate{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 159)} // 160 bits + sign octet = 21
	if err := checkSerial(c); err == nil {
		t.Error("checkSerial accepted a 21-octet serial")
	}
	c.SerialNumber = big.NewInt(-5)
	if err := checkSerial(c); err == nil {
		t.Error("checkSerial accepted a negative serial")
	}
}

func TestCheckKeyRSASizes(t *testing.T) {
	for _, tt := range []struct {
		bits int
		ok   bool
	}{{1024, false}, {2047, false}, {2048, true}, {2052, false}, {3072, true}, {4096, true}} {
		n := new(big.Int).Lsh(big.NewInt(1), uint(tt.bits-1)) // exactly tt.bits long
		c := &x509.Certificate{PublicKeyAlgorithm: x509.RSA, PublicKey: &rsa.PublicKey{N: n, E: 65537}}
		if err := checkKey(c); (err == nil) != tt.ok {
			t.Errorf("checkKey(RSA %d) = %v, want ok %v", tt.bits, err, tt.ok)
		}
	}
}

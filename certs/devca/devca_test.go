package devca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis/certs"
	"portcullis/internal/conf"
)

func parsePEMCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueVerifyRevoke(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, "Test device CA")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ca.KeyFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	const id = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
	certPEM, keyPEM, serial, err := ca.IssueDevice(id, "Dev.User@Portcullis.dev", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("issued pair does not load: %v", err)
	}
	leaf := parsePEMCert(t, certPEM)
	if leaf.SerialNumber.Text(16) != serial {
		t.Errorf("serial = %s, certificate has %x", serial, leaf.SerialNumber)
	}

	cfg := certs.DevicesConfig{CAs: []certs.CAConfig{{
		Name:     "dev",
		Bundle:   conf.Path(filepath.Join(dir, "ca.pem")),
		DeviceID: certs.IdentityRule{From: certs.FromURISAN, Pattern: QuickstartDeviceIDPattern},
		User:     &certs.IdentityRule{From: certs.FromUPNSAN},
	}}}
	d, err := certs.NewDevices(cfg, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Verify([]*x509.Certificate{leaf}, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.DeviceID != id || got.User != "dev.user@portcullis.dev" || got.Serial != serial {
		t.Errorf("identity = %+v", got)
	}
	// The email SAN carries the same user.
	cfg.CAs[0].User = &certs.IdentityRule{From: certs.FromEmailSAN}
	d2, err := certs.NewDevices(cfg, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d2.Verify([]*x509.Certificate{leaf}, nil); err != nil || got.User != "dev.user@portcullis.dev" {
		t.Errorf("Verify with the email rule = %+v, %v", got, err)
	}

	// Revoke, publish a CRL, and the certificate is refused.
	if err := ca.Revoke(strings.ToUpper("00" + serial)); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(serial); err != nil {
		t.Errorf("revoking twice = %v, want nil", err)
	}
	if err := ca.Revoke("abcdef"); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("Revoke(unknown) = %v, want ErrUnknownSerial", err)
	}
	crl, err := ca.CRL(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crl"), crl, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Revocation.CRLFiles = []conf.Path{conf.Path(filepath.Join(dir, "ca.crl"))}
	d3, err := certs.NewDevices(cfg, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d3.Verify([]*x509.Certificate{leaf}, nil)
	var ve *certs.VerifyError
	if !errors.As(err, &ve) || ve.Code != certs.CodeRevoked {
		t.Errorf("Verify after revocation = %v, want revoked", err)
	}

	// CRL numbers increase, across a reload of the CA too.
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := again.CRL(0)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := crlNumber(t, crl), crlNumber(t, crl2)
	if n2 <= n1 {
		t.Errorf("CRL numbers %d then %d, want increasing", n1, n2)
	}
}

func crlNumber(t *testing.T, b []byte) int64 {
	t.Helper()
	blk, _ := pem.Decode(b)
	rl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return rl.Number.Int64()
}

func TestIssueErrors(t *testing.T) {
	ca, err := Init(t.TempDir(), "CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ id, user string }{{"", ""}, {"a/b", ""}, {"ok", "has space@x"}, {strings.Repeat("a", 129), ""}} {
		if _, _, _, err := ca.IssueDevice(tt.id, tt.user, 0); err == nil {
			t.Errorf("IssueDevice(%q, %q) succeeded", tt.id, tt.user)
		}
	}
	if _, _, _, err := ca.IssueServer(nil, 0); err == nil {
		t.Error("IssueServer without hosts succeeded")
	}
	if err := ca.Revoke("zz"); err == nil {
		t.Error("Revoke(zz) succeeded")
	}
}

func TestInitLoadsExisting(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, "A")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Init(dir, "B")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Certificate().Equal(b.Certificate()) {
		t.Error("Init over an existing CA made a new one")
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Error("Load with a broken key succeeded")
	}
}

func TestEnsureQuickstart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	q, err := EnsureQuickstart(dir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := []string{q.CACert, q.CAKey, q.ServerCert, q.ServerKey, q.DeviceCACert, q.DeviceCAKey, q.DeviceCert, q.DeviceKey, q.DeviceIDFile}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = read(f)
	}
	if !uuidRE.MatchString(q.DeviceID) || strings.TrimSpace(string(read(q.DeviceIDFile))) != q.DeviceID {
		t.Errorf("device id %q, file %q", q.DeviceID, read(q.DeviceIDFile))
	}
	for _, k := range []string{q.CAKey, q.ServerKey, q.DeviceCAKey, q.DeviceKey} {
		if fi, err := os.Stat(k); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", k, fi.Mode().Perm())
		}
	}

	// Idempotent: a second run changes nothing.
	q2, err := EnsureQuickstart(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q2.DeviceID != q.DeviceID {
		t.Errorf("device id changed from %s to %s", q.DeviceID, q2.DeviceID)
	}
	for _, f := range files {
		if !bytes.Equal(before[f], read(f)) {
			t.Errorf("%s changed on the second run", f)
		}
	}

	// The device certificate verifies with the documented rules.
	d, err := certs.NewDevices(certs.DevicesConfig{CAs: []certs.CAConfig{QuickstartCAConfig("dev", q.DeviceCACert)}}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(q.DeviceCert, q.DeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.Verify([]*x509.Certificate{pair.Leaf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.DeviceID != q.DeviceID || id.User != QuickstartUser {
		t.Errorf("identity = %s/%s, want %s/%s", id.DeviceID, id.User, q.DeviceID, QuickstartUser)
	}

	// The server certificate is trusted through ca.pem, for every host.
	sc, err := certs.NewServerCerts(certs.ServerConfig{Certificates: []certs.CertificateFiles{{Cert: conf.Path(q.ServerCert), Key: conf.Path(q.ServerKey)}}}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(read(q.CACert))
	leaf := sc.Leafs()
	if len(leaf) != 1 {
		t.Fatalf("Leafs = %v", leaf)
	}
	srv, err := tls.LoadX509KeyPair(q.ServerCert, q.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	// The device CA does not vouch for servers, nor the server CA for devices.
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: d.Pool(nil), DNSName: "localhost"}); err == nil {
		t.Error("the device CA signed the server certificate")
	}

	// A deleted device certificate is issued again for the same id.
	if err := os.Remove(q.DeviceCert); err != nil {
		t.Fatal(err)
	}
	q3, err := EnsureQuickstart(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q3.DeviceID != q.DeviceID || bytes.Equal(read(q.DeviceCert), before[q.DeviceCert]) {
		t.Error("the device certificate was not reissued for the same id")
	}
}

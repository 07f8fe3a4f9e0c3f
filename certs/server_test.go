package certs

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

// serverPair issues a server certificate under ca for hosts and returns
// its PEM certificate and key.
func serverPair(t *testing.T, ca *testCA, dns []string, ips []net.IP) (certPEMData, keyPEM []byte) {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "server"},
		NotBefore:    testNow.Add(-24 * time.Hour),
		NotAfter:     testNow.Add(365 * 24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	c := mustCreate(t, tmpl, ca.cert, k.Public(), ca.key)
	der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM(c), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

type addrConn struct {
	net.Conn
	local net.Addr
}

func (c addrConn) LocalAddr() net.Addr { return c.local }

func TestServerCerts(t *testing.T) {
	ca := newRoot(t, "Server CA")
	dir := t.TempDir()
	write := func(name string, c, k []byte, n int) {
		writeAndTouch(t, filepath.Join(dir, name+".pem"), c, n)
		writeAndTouch(t, filepath.Join(dir, name+".key"), k, n)
	}
	c, k := serverPair(t, ca, []string{"a.example.com"}, nil)
	write("a", c, k, 0)
	c, k = serverPair(t, ca, []string{"*.wild.example", "exact.wild.example"}, nil)
	write("w", c, k, 0)
	c, k = serverPair(t, ca, nil, []net.IP{net.ParseIP("10.0.0.1")})
	write("ip", c, k, 0)
	cfg := ServerConfig{Certificates: []CertificateFiles{{inDir(dir, "a.pem"), inDir(dir, "a.key")}, {inDir(dir, "w.pem"), inDir(dir, "w.key")}, {inDir(dir, "ip.pem"), inDir(dir, "ip.key")}}}
	s, err := NewServerCerts(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	name := func(c *tls.Certificate) string {
		if len(c.Leaf.DNSNames) > 0 {
			return c.Leaf.DNSNames[0]
		}
		return c.Leaf.IPAddresses[0].String()
	}
	tests := []struct {
		sni   string
		local string
		want  string
	}{
		{"a.example.com", "", "a.example.com"},
		{"A.Example.COM.", "", "a.example.com"},
		{"x.wild.example", "", "*.wild.example"},
		{"exact.wild.example", "", "*.wild.example"},
		{"deep.x.wild.example", "", "a.example.com"},
		{"10.0.0.1", "", "10.0.0.1"},
		{"", "10.0.0.1", "10.0.0.1"},
		{"unknown.example", "192.0.2.1", "a.example.com"},
		{"", "", "a.example.com"},
	}
	for _, tt := range tests {
		hello := &tls.ClientHelloInfo{ServerName: tt.sni}
		if tt.local != "" {
			hello.Conn = addrConn{local: &net.TCPAddr{IP: net.ParseIP(tt.local), Port: 443}}
		}
		c, err := s.GetCertificate(hello)
		if err != nil {
			t.Fatalf("GetCertificate(%q) = %v", tt.sni, err)
		}
		if got := name(c); got != tt.want {
			t.Errorf("GetCertificate(sni %q, local %q) = %s, want %s", tt.sni, tt.local, got, tt.want)
		}
	}

	// AddCertificate: a generated certificate, kept across reloads.
	c, k = serverPair(t, ca, []string{"added.example"}, nil)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	pair.Leaf = nil
	if err := s.AddCertificate(pair); err != nil {
		t.Fatal(err)
	}

	// Hot reload: a changed file is picked up by a poll.
	old, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
	s.poll() // nothing changed
	if cur, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"}); cur != old {
		t.Error("poll without a change replaced the certificate")
	}
	c, k = serverPair(t, ca, []string{"a.example.com"}, nil)
	write("a", c, k, 1)
	s.poll()
	cur, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
	if cur.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Error("poll after a change kept the old certificate")
	}
	if got, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "added.example"}); got == nil || name(got) != "added.example" {
		t.Error("the added certificate did not survive the reload")
	}

	// A broken key keeps the old set.
	writeAndTouch(t, filepath.Join(dir, "a.key"), []byte("broken"), 2)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "a.pem") {
		t.Errorf("Reload with a broken key = %v, want an error naming a.pem", err)
	}
	if got, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"}); got != cur {
		t.Error("a failed reload replaced the certificate")
	}

	leafs := s.Leafs()
	if len(leafs) != 4 || leafs[3].Source != "added" || leafs[0].NotAfter.IsZero() || leafs[2].Names[0] != "10.0.0.1" {
		t.Errorf("Leafs = %+v", leafs)
	}
}

func TestServerCertsErrors(t *testing.T) {
	if _, err := NewServerCerts(ServerConfig{Certificates: []CertificateFiles{{inDir(t.TempDir(), "nope.pem"), "nope.key"}}}, Options{}); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewServerCerts with missing files = %v", err)
	}
	s, err := NewServerCerts(ServerConfig{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err != ErrNoServerCertificate {
		t.Errorf("GetCertificate with none = %v, want ErrNoServerCertificate", err)
	}
	cfg := ServerConfig{Certificates: []CertificateFiles{{}}, MinVersion: "1.1"}
	err = cfg.Validate()
	for _, k := range []string{"certificates[0].cert", "certificates[0].key", "min_version"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("Validate = %v, want an error for %s", err, k)
		}
	}
	for v, want := range map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13} {
		if got := (&ServerConfig{MinVersion: v}).TLSMinVersion(); got != want {
			t.Errorf("TLSMinVersion(%q) = %x, want %x", v, got, want)
		}
	}
}

// inDir is the configuration path of name in dir.
func inDir(dir, name string) conf.Path { return conf.Path(filepath.Join(dir, name)) }

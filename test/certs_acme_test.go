package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"portcullis/certs"
	"portcullis/internal/conf"
)

// pebbleVersion is the Pebble the ACME test runs against (TESTING.md §4).
const pebbleVersion = "v2.10.1"

// pebbleBinary returns bin/pebble at the repository root, building it
// with go install when it is missing.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs("../bin")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(bin, "pebble")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	cmd := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		missingPeer(t, "cannot build pebble: %v\n%s", err, out)
	}
	return p
}

// a pebbleProc is a running Pebble.
type pebbleProc struct {
	cmd     *exec.Cmd
	dir     string // its URL base: https://127.0.0.1:port
	mgmt    string
	tlsCert string // the PEM file of Pebble's own HTTPS certificate
	done    chan struct{}
}

// startPebble starts Pebble with a "default" profile (90 days) and a
// "short" one (validity seconds), every challenge taken as valid.
func startPebble(t *testing.T, validity int) *pebbleProc {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "pebble.crt"), filepath.Join(dir, "pebble.key")
	writeSelfSigned(t, certFile, keyFile)
	api, mgmt, httpPort, tlsPort := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{"pebble": {
  "listenAddress": "127.0.0.1:%d", "managementListenAddress": "127.0.0.1:%d",
  "certificate": %q, "privateKey": %q,
  "httpPort": %d, "tlsPort": %d, "ocspResponderURL": "",
  "externalAccountBindingRequired": false, "domainBlocklist": [],
  "retryAfter": {"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
  "profiles": {
    "default": {"description": "default", "validityPeriod": 7776000},
    "short": {"description": "short", "validityPeriod": %d}}}}`, api, mgmt, certFile, keyFile, httpPort, tlsPort, validity)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebbleProc{
		dir:     fmt.Sprintf("https://127.0.0.1:%d", api),
		mgmt:    fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		tlsCert: certFile,
		done:    make(chan struct{}),
	}
	p.cmd = exec.Command(bin, "-config", cfgFile)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	logf, err := os.Create(filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("pebble log:\n%s", b)
		}
	})
	c := p.client(t)
	waitUntil(t, 30*time.Second, "pebble to listen", func() bool {
		r, err := c.Get(p.dir + "/dir")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	return p
}

func (p *pebbleProc) client(t *testing.T) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: poolFrom(t, p.tlsCert)}}, Timeout: 5 * time.Second}
}

// root returns the root that issues Pebble's certificates (new on every
// start).
func (p *pebbleProc) root(t *testing.T) *x509.CertPool {
	t.Helper()
	r, err := p.client(t).Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %q", b)
	}
	return pool
}

func (p *pebbleProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// writeSelfSigned writes an ECDSA certificate for localhost and
// 127.0.0.1, and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost", "static.portcullis.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 100ms until it holds, failing after
// timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// handshake connects to addr with SNI name and returns the verified leaf
// the server sent, or an error.
func handshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMEWithPebble obtains a certificate from Pebble through the ACME
// configuration of certs.ServerCerts, serves it on a real TLS listener
// beside a certificate file, renews it, and keeps serving it once Pebble
// is gone.
func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pebble")
	}
	const validity = 30 // seconds: certmagic renews in the last third
	peb := startPebble(t, validity)
	root := peb.root(t)

	dir := t.TempDir()
	staticCert, staticKey := filepath.Join(dir, "static.crt"), filepath.Join(dir, "static.key")
	writeSelfSigned(t, staticCert, staticKey)
	cfg := certs.ServerConfig{
		Certificates: []certs.CertificateFiles{{Cert: conf.Path(staticCert), Key: conf.Path(staticKey)}},
		ACME: &certs.ACMEConfig{
			Email:      "ops@example.test",
			CA:         peb.dir + "/dir",
			CARoot:     conf.Path(peb.tlsCert),
			Domains:    []string{"app.portcullis.test"},
			Challenges: []string{certs.ChallengeHTTP01},
			Profile:    "short",
			HTTPPort:   freePort(t), // certmagic's own solver listens here; Pebble does not call it
		},
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("certs log:\n%s", logs.String())
		}
	})
	sc, err := certs.NewServerCerts(cfg, certs.Options{Logger: logger, StateDir: filepath.Join(dir, "state"), ACMERenewCheck: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- sc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: sc.GetCertificate,
		NextProtos:     append([]string{"http/1.1"}, sc.NextProtos()...),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0), // the handshakes before the certificate arrives fail
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// Obtain: the ACME name verifies against Pebble's root.
	var first *x509.Certificate
	waitUntil(t, 60*time.Second, "the ACME certificate", func() bool {
		first, err = handshake(addr, "app.portcullis.test", root)
		return err == nil
	})
	t.Logf("obtained serial %x, valid until %s", first.SerialNumber, first.NotAfter.Format(time.RFC3339))

	// SNI picks: another name gets the certificate file.
	staticPool := x509.NewCertPool()
	staticPool.AppendCertsFromPEM(mustRead(t, staticCert))
	if _, err := handshake(addr, "static.portcullis.test", staticPool); err != nil {
		t.Errorf("static name: %v", err)
	}
	if got := len(sc.Leafs()); got != 2 {
		t.Errorf("Leafs: %d certificates, want 2: %+v", got, sc.Leafs())
	}

	// Renew: the short profile makes certmagic's maintenance renew within
	// seconds; the new certificate is served.
	var renewed *x509.Certificate
	waitUntil(t, 90*time.Second, "a renewed certificate", func() bool {
		renewed, err = handshake(addr, "app.portcullis.test", root)
		return err == nil && renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	t.Logf("renewed: serial %x, valid until %s", renewed.SerialNumber, renewed.NotAfter.Format(time.RFC3339))

	// Pebble gone: the certificate in hand is still served.
	peb.stop()
	got, err := handshake(addr, "app.portcullis.test", root)
	if err != nil {
		t.Fatalf("after pebble stopped: %v", err)
	}
	if got.NotAfter.Before(renewed.NotAfter) {
		t.Errorf("after pebble stopped: serial %x, want %x or newer", got.SerialNumber, renewed.SerialNumber)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

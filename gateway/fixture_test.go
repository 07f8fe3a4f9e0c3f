package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis/certs/devca"
)

// testDeviceID is the device of a fixture's device certificate.
const testDeviceID = "0b7c1f4e-5d1a-4c53-9f0e-2b8e0d6f8a11"

// fixture is a Gateway built from a real configuration file, without its
// listeners: a server certificate for localhost, a device CA "corp" and a
// certificate it issued (device testDeviceID, user bench@example.test),
// one resource "app", and decision records written to a file.
type fixture struct {
	g       *Gateway
	dir     string
	records string               // the decision log
	device  *tls.ConnectionState // a connection presenting the device certificate
}

// newFixture builds a fixture whose resource "app" answers for hosts (a
// YAML list) in front of upstream under policy (YAML, flow or block
// style); extra is appended at the top level of the configuration (an
// admin: key in it replaces the fixture's, which turns the admin listener
// off). The
// decision log runs until the test ends.
func newFixture(tb testing.TB, upstream, hosts, policy, extra string) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := devca.InitFiles(dir, "device-ca", "Test Device CA")
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, _, _, err := ca.IssueDevice(testDeviceID, "bench@example.test", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := devca.InitFiles(dir, "server-ca", "Test Server CA")
	if err != nil {
		tb.Fatal(err)
	}
	sc, sk, _, _ := srv.IssueServer([]string{"localhost"}, time.Hour)
	os.WriteFile(filepath.Join(dir, "s.pem"), sc, 0o600)
	os.WriteFile(filepath.Join(dir, "s.key"), sk, 0o600)
	os.WriteFile(filepath.Join(dir, "client.secret"), []byte("secret"), 0o600)
	records := filepath.Join(dir, "decisions.log")
	admin := `admin: {listen: "off"}`
	if strings.HasPrefix(extra, "admin:") || strings.Contains(extra, "\nadmin:") {
		admin = "" // extra has its own
	}
	cfg := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
%s
tls: {certificates: [{cert: s.pem, key: s.key}]}
audit: {output: %s}
devices:
  cas:
    - name: corp
      bundle: device-ca.pem
      device_id: {from: uri_san, pattern: '^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$'}
      user: {from: email_san}
resources:
  - name: app
    hosts: %s
    upstream: %s
    policy: %s
%s`, admin, records, hosts, upstream, policy, extra)
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	g, err := New(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.audit.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; g.store.Close() })
	return &fixture{g: g, dir: dir, records: records,
		device: &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}}
}

// runGateway builds a Gateway from the configuration at path and runs
// it, listeners included, until stop is called (at the latest when the
// test ends). stop waits for Run to return and reports its error; it may
// be called more than once.
func runGateway(t testing.TB, path string) (g *Gateway, stop func()) {
	t.Helper()
	ready := make(chan struct{})
	g, err := New(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnReady: func(*Gateway) { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	}
	return g, stop
}

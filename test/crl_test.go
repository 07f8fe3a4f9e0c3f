package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"portcullis/certs/devca"
)

// TestCRLRefreshClosesLiveConnection: the device CA revokes a device's
// certificate and publishes a CRL; the gateway's CRL refresh closes that
// device's live websocket and refuses its next request, while another
// device carries on.
func TestCRLRefreshClosesLiveConnection(t *testing.T) {
	e := newEnv(t)
	ca, err := devca.LoadFiles(e.dir, "device-ca")
	if err != nil {
		t.Fatal(err)
	}
	crlPath := filepath.Join(e.dir, "device-ca.crl")
	publish := func() {
		crl, err := ca.CRL(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tmp := crlPath + ".tmp"
		os.WriteFile(tmp, crl, 0o644)
		os.Rename(tmp, crlPath)
	}
	publish()
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "      user: {from: email_san}\n", "      user: {from: email_san}\n  revocation: {crl_files: [device-ca.crl]}\n", 1)
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	e.setCompliant(e.dev2ID, true)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(cert, key string) *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d/ws", e.port),
			&websocket.DialOptions{HTTPClient: e.client(cert, key, false)})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	alice, bob := dial(e.dev1Cert, e.dev1Key), dial(e.dev2Cert, e.dev2Key)
	defer alice.CloseNow()
	defer bob.CloseNow()

	if err := ca.Revoke(e.dev1Serial); err != nil {
		t.Fatal(err)
	}
	publish()
	if _, _, err := alice.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("alice's websocket after her certificate was revoked: %v", err)
	}
	if err := bob.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := bob.Read(ctx); err != nil || string(m) != "echo: hi" {
		t.Errorf("bob's websocket: %q %v", m, err)
	}
	req, _ := http.NewRequest("GET", e.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || parseProblem(t, string(body)).Reason != "device.certificate_revoked" {
		t.Errorf("request with the revoked certificate: %d %s", resp.StatusCode, body)
	}
	if v := g.metric(`portcullis_reevaluation_closed_total{reason="device.certificate_revoked"}`); v != "1" {
		t.Errorf("closed metric = %q", v)
	}
}

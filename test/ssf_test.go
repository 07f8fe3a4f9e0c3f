package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
)

// transmitter is an SSF transmitter written for the test: it serves its
// configuration and JWKS and signs Security Event Tokens with a real key.
type transmitter struct {
	issuer string
	signer jose.Signer
}

func newTransmitter(t *testing.T) *transmitter {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tx := &transmitter{issuer: "http://" + ln.Addr().String()}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "tx-1", Algorithm: "ES256", Use: "sig"}}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/ssf-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"spec_version": "1_0-ID2", "issuer": tx.issuer, "jwks_uri": tx.issuer + "/jwks",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(jwks) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	tx.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", "tx-1"))
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// set signs one SET about subject carrying one event.
func (tx *transmitter) set(t *testing.T, aud string, subject map[string]any, eventType string, event map[string]any) string {
	claims := map[string]any{"iss": tx.issuer, "aud": aud, "iat": time.Now().Unix(), "jti": uuid4(),
		"sub_id": subject, "events": map[string]any{eventType: event}}
	b, _ := json.Marshal(claims)
	jws, err := tx.signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

const (
	caepCompliance     = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
	caepSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
)

// TestSharedSignalsThroughGateway: CAEP events pushed by a transmitter
// (RFC 8935) close live connections and change decisions.
func TestSharedSignalsThroughGateway(t *testing.T) {
	e := newEnv(t)
	tx := newTransmitter(t)
	token := "ssf-token-" + uuid4()
	os.WriteFile(filepath.Join(e.dir, "ssf.token"), []byte(token), 0o600)
	const aud = "https://pep.example.test/ssf"
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "    - {name: uem, type: webhook, secret_file: feed.secret}",
		"    - {name: uem, type: webhook, secret_file: feed.secret}\n    - {name: ssf, type: ssf, issuer: \""+tx.issuer+"\", audience: \""+aud+"\", authorization_file: ssf.token}", 1)
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	e.start()
	e.setCompliant(e.dev1ID, true)

	push := func(set, bearer string) int {
		req, _ := http.NewRequest("POST", e.url("/.portcullis/feeds/ssf"), strings.NewReader(set))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := e.client("", "", true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", e.url("/"), nil)
		req.Header.Set("Accept", "application/json")
		resp, err := e.client(e.dev1Cert, e.dev1Key, true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return 200, ""
		}
		return resp.StatusCode, parseProblem(t, string(body)).Reason
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d/ws", e.port),
			&websocket.DialOptions{HTTPClient: e.client(e.dev1Cert, e.dev1Key, false)})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	device := map[string]any{"format": "complex", "device": map[string]any{"format": "opaque", "id": e.dev1ID}}

	ws := dial()
	defer ws.CloseNow()
	// The two compliance changes lie in different seconds: within one
	// second the more restrictive would win.
	bad := tx.set(t, aud, device, caepCompliance, map[string]any{"previous_status": "compliant", "current_status": "not-compliant", "event_timestamp": time.Now().Unix() - 1})
	if code := push(bad, "wrong"); code != 401 {
		t.Errorf("push with a wrong bearer: %d, want 401", code)
	}
	if code := push(bad, token); code != 202 {
		t.Fatalf("device-compliance-change push: %d, want 202", code)
	}
	if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("websocket still open after device-compliance-change to not-compliant: %v", err)
	}
	if code, reason := get(); code != 403 || reason != "device.not_compliant" {
		t.Errorf("after not-compliant: %d %s", code, reason)
	}
	good := tx.set(t, aud, device, caepCompliance, map[string]any{"previous_status": "not-compliant", "current_status": "compliant", "event_timestamp": time.Now().Unix()})
	if code := push(good, token); code != 202 {
		t.Fatalf("compliant push: %d", code)
	}
	if code, reason := get(); code != 200 {
		t.Errorf("after compliant again: %d %s", code, reason)
	}

	// A session revocation for the user closes her live connection.
	ws = dial()
	defer ws.CloseNow()
	user := map[string]any{"format": "email", "email": e.dev1User}
	rev := tx.set(t, aud, user, caepSessionRevoked, map[string]any{"event_timestamp": time.Now().Unix()})
	if code := push(rev, token); code != 202 {
		t.Fatalf("session-revoked push: %d", code)
	}
	if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("websocket still open after session-revoked: %v", err)
	}
	// A forged SET (signed by another key) changes nothing.
	forged := newTransmitter(t)
	forged.issuer = tx.issuer
	if code := push(forged.set(t, aud, device, caepCompliance, map[string]any{"current_status": "not-compliant", "event_timestamp": time.Now().Unix()}), token); code != 400 {
		t.Errorf("forged SET: %d, want 400", code)
	}
}

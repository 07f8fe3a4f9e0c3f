package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func (e *env) adminGet(t *testing.T, path string, withToken bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+e.admin+path, nil)
	if withToken {
		tok, _ := os.ReadFile(e.adminToken)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestAdminAPIAndRevoke(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)
	e.setCompliant(e.dev2ID, true)

	if code, _ := e.adminGet(t, "/v1/devices/corp/"+e.dev1ID, false); code != 401 {
		t.Errorf("admin API without token: %d, want 401", code)
	}
	code, dev := e.adminGet(t, "/v1/devices/corp/"+e.dev1ID, true)
	if code != 200 || dev["known"] != true {
		t.Fatalf("device: %d %v", code, dev)
	}
	if recs, _ := dev["records"].([]any); len(recs) != 1 || recs[0].(map[string]any)["compliance"] != "compliant" {
		t.Errorf("device records = %v", dev["records"])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	if _, u := e.adminGet(t, "/v1/users/"+e.dev1User, true); len(u["live_requests"].([]any)) != 1 {
		t.Errorf("alice's live requests = %v", u["live_requests"])
	}

	out, code2 := run(t, binPath, "revoke", "--admin", "http://"+e.admin, "--token-file", e.adminToken, "--user", e.dev1User, "--reason", "test")
	if code2 != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("revoke: exit %d %s", code2, out)
	}
	if _, _, err := alice.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("alice's websocket after revoking alice: %v", err)
	}
	if err := bob.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatalf("bob's websocket: %v", err)
	}
	if _, b, err := bob.Read(ctx); err != nil || string(b) != "echo: hi" {
		t.Errorf("bob's websocket after revoking alice: %q %v", b, err)
	}

	// Revoking bob's device refuses his certificate from then on.
	out, code2 = run(t, binPath, "revoke", "--admin", "http://"+e.admin, "--token-file", e.adminToken, "--device", "corp/"+e.dev2ID)
	if code2 != 0 {
		t.Fatalf("revoke device: exit %d %s", code2, out)
	}
	if _, _, err := bob.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("bob's websocket after revoking his device: %v", err)
	}
	req, _ := http.NewRequest("GET", e.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client(e.dev2Cert, e.dev2Key, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || parseProblem(t, string(b)).Reason != "device.certificate_revoked" {
		t.Errorf("request from the revoked device: %d %s", resp.StatusCode, b)
	}
}

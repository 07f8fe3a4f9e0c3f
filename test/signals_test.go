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
)

// oktaRisk is a real-shaped Okta event hook delivery of one
// user.risk.detect event (Identity Threat Protection).
func oktaRisk(uuid, user, prev, level string, published time.Time) string {
	return fmt.Sprintf(`{"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
  "contentType": "application/json", "source": "https://acme.okta.com/api/v1/eventHooks/who8r2x1cFqUoZ9Lk0h7",
  "eventId": %q, "eventTime": %q,
  "data": {"events": [{
    "uuid": %q, "published": %q,
    "eventType": "user.risk.detect", "version": "0", "severity": "WARN",
    "displayMessage": "User risk detected",
    "actor": {"id": "0oa1sys000000", "type": "PublicClientApp", "alternateId": "system"},
    "target": [{"id": "00u9k2mQ7dLxYzP1h0g7", "type": "User", "alternateId": %q, "displayName": "Alice"}],
    "outcome": {"result": "SUCCESS"},
    "debugContext": {"debugData": {
      "risk": "{previousLevel=%s, level=%s, detectionName=Session Hijacking, reasons=New Device, issuer=OKTA}"}}
  }]}}`, "evt-"+uuid, published.Format(time.RFC3339Nano), uuid, published.Format(time.RFC3339Nano), user, prev, level)
}

func TestOktaRiskThroughGateway(t *testing.T) {
	e := newEnv(t)
	secret := "okta-hook-secret-" + uuid4()
	os.WriteFile(filepath.Join(e.dir, "okta.secret"), []byte(secret), 0o600)
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "    - {name: uem, type: webhook, secret_file: feed.secret}",
		"    - {name: uem, type: webhook, secret_file: feed.secret}\n    - {name: okta, type: okta-event-hook, authorization_file: okta.secret}", 1)
	cfg += `  - name: risky
    hosts: [localhost]
    paths: [/risky]
    upstream: ` + e.upstream + `
    policy:
      login: none
      device: {certificate: required}
      user: {max_risk: medium, unknown_risk: allow}
`
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	e.start()
	e.setCompliant(e.dev1ID, true)

	hook := func(method, body string, auth string) (int, string) {
		req, _ := http.NewRequest(method, e.url("/.portcullis/feeds/okta"), strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		if method == "GET" {
			req.Header.Set("X-Okta-Verification-Challenge", "challenge-123")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := e.client("", "", true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(out)
	}
	if code, body := hook("GET", "", secret); code != 200 || !strings.Contains(body, `"verification":"challenge-123"`) {
		t.Fatalf("verification: %d %s", code, body)
	}
	if code, _ := hook("POST", oktaRisk(uuid4(), e.dev1User, "LOW", "HIGH", time.Now()), "wrong"); code != 401 {
		t.Errorf("delivery with the wrong secret: %d, want 401", code)
	}

	get := func() (int, string) {
		req, _ := http.NewRequest("GET", e.url("/risky/x"), nil)
		req.Header.Set("Accept", "application/json")
		resp, err := e.client(e.dev1Cert, e.dev1Key, true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return 200, ""
		}
		return resp.StatusCode, parseProblem(t, string(b)).Reason
	}
	now := time.Now()
	if code, _ := hook("POST", oktaRisk(uuid4(), e.dev1User, "NONE", "LOW", now.Add(-2*time.Second)), secret); code != 200 {
		t.Fatalf("LOW delivery: %d", code)
	}
	if code, reason := get(); code != 200 {
		t.Fatalf("at LOW risk: %d %s", code, reason)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d/risky/ws", e.port),
		&websocket.DialOptions{HTTPClient: e.client(e.dev1Cert, e.dev1Key, false)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	if code, _ := hook("POST", oktaRisk(uuid4(), e.dev1User, "LOW", "HIGH", now.Add(-time.Second)), secret); code != 200 {
		t.Fatalf("HIGH delivery: %d", code)
	}
	if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("websocket still open after risk went HIGH: %v", err)
	}
	if code, reason := get(); code != 403 || reason != "user.risk_too_high" {
		t.Errorf("at HIGH risk: %d %s, want 403 user.risk_too_high", code, reason)
	}
	if code, _ := hook("POST", oktaRisk(uuid4(), e.dev1User, "HIGH", "LOW", now), secret); code != 200 {
		t.Fatalf("back to LOW: %d", code)
	}
	if code, reason := get(); code != 200 {
		t.Errorf("back at LOW risk: %d %s", code, reason)
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"portcullis/posture"
)

// echoUpstream answers with the request headers it received, as JSON.
func echoUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(up.Close)
	return up
}

// TestHandlerStages drives ServeHTTP's stages in process: a route miss,
// certificate and revocation gating through Gather and Decide, and the
// identity headers an upstream receives.
func TestHandlerStages(t *testing.T) {
	up := echoUpstream(t)
	fx := newFixture(t, up.URL, "[app.test, 127.0.0.1]", "{login: none, device: {certificate: required, managed: true, compliant: true}}", "")
	g, cs := fx.g, fx.device
	key := posture.DeviceKey{CA: "corp", ID: testDeviceID}
	ctx := context.Background()
	if _, err := g.store.ApplyPosture(ctx, []posture.PostureEvent{{Key: key, Posture: posture.Posture{
		Source: "uem", EventID: "e1", Managed: true, Compliance: posture.Compliant, State: posture.StateActive, ObservedAt: time.Now(),
	}}}); err != nil {
		t.Fatal(err)
	}
	request := func(host string, withCert bool, hdr http.Header) (int, string, http.Header) {
		t.Helper()
		r := httptest.NewRequest("GET", "https://"+host+"/page", nil)
		r.Header.Set("Accept", "application/json")
		for k, v := range hdr {
			r.Header[k] = v
		}
		if withCert {
			r.TLS = cs
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		body, _ := io.ReadAll(w.Result().Body)
		if w.Code != http.StatusOK {
			var p struct{ Reason string }
			json.Unmarshal(body, &p)
			return w.Code, p.Reason, nil
		}
		var got http.Header
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("upstream answer: %v\n%s", err, body)
		}
		return w.Code, "", got
	}

	if code, _, got := request("app.test", true, http.Header{"X-Portcullis-User": {"admin@corp"}, "X-Portcullis-Device-Id": {"forged"}}); code != 200 ||
		got.Get("X-Portcullis-User") != "bench@example.test" || got.Get("X-Portcullis-Device-Id") != testDeviceID || got.Get("X-Portcullis-Assertion") == "" {
		t.Errorf("allowed request: %d, upstream saw user %q device %q", code, got.Get("X-Portcullis-User"), got.Get("X-Portcullis-Device-Id"))
	}
	if code, reason, _ := request("app.test", false, nil); code != 401 || reason != "device.certificate_missing" {
		t.Errorf("no certificate: %d %s, want 401 device.certificate_missing", code, reason)
	}

	// A revoked user: the certificate's user signed in when it was issued.
	if _, err := g.store.Revoke(ctx, posture.Revocation{Kind: posture.RevokeUser, User: "bench@example.test"}); err != nil {
		t.Fatal(err)
	}
	if code, reason, _ := request("app.test", true, nil); code != 401 || reason != "session.revoked" {
		t.Errorf("revoked user: %d %s, want 401 session.revoked", code, reason)
	}
	// A revoked device is refused before its user is looked at.
	if _, err := g.store.Revoke(ctx, posture.Revocation{Kind: posture.RevokeDevice, Device: key}); err != nil {
		t.Fatal(err)
	}
	if code, reason, _ := request("app.test", true, nil); code != 403 || reason != "device.certificate_revoked" {
		t.Errorf("revoked device: %d %s, want 403 device.certificate_revoked", code, reason)
	}

	if code, reason, _ := request("other.test", true, nil); code != 404 || reason != "route.not_found" {
		t.Errorf("route miss: %d %s, want 404 route.not_found", code, reason)
	}
}

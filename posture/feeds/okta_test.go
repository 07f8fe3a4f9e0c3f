package feeds

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
	"portcullis/posture"
)

const oktaSecret = "s3cr3t-hook-key-from-config"

// fakeOrg is an Okta org's System Log: pages keyed by the "after" cursor
// ("" is the first, since= request).
type fakeOrg struct {
	srv   *httptest.Server
	mu    sync.Mutex
	pages map[string][]string // after → events
	next  map[string]string   // after → next after
	reqs  []string            // raw queries seen
	auth  []string
}

func newFakeOrg(t testing.TB) *fakeOrg {
	o := &fakeOrg{pages: map[string][]string{}, next: map[string]string{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/logs" {
			http.NotFound(w, r)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.reqs = append(o.reqs, r.URL.RawQuery)
		o.auth = append(o.auth, r.Header.Get("Authorization"))
		after := r.URL.Query().Get("after")
		if after == "" && r.URL.Query().Get("since") == "" {
			http.Error(w, "need since or after", http.StatusBadRequest)
			return
		}
		nxt := o.next[after]
		if nxt == "" {
			nxt = after
		}
		w.Header().Set("Link", fmt.Sprintf(`<%s/api/v1/logs?limit=1000&after=%s>; rel="self"`, o.srv.URL, after))
		w.Header().Add("Link", fmt.Sprintf(`<%s/api/v1/logs?limit=1000&after=%s>; rel="next"`, o.srv.URL, nxt))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "["+strings.Join(o.pages[after], ",")+"]")
	}))
	t.Cleanup(o.srv.Close)
	return o
}

type oktaHarness struct {
	t    testing.TB
	dir  string
	cfg  posture.FeedConfig
	db   *posture.DB
	hook *OktaHook
	srv  *httptest.Server
	now  time.Time
	org  *fakeOrg
}

func newOktaHarness(t testing.TB) *oktaHarness {
	h := &oktaHarness{t: t, dir: t.TempDir(), now: t0.Add(2 * time.Minute)}
	h.org = newFakeOrg(t)
	write := func(name, v string) conf.Path {
		p := filepath.Join(h.dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return conf.Path(p)
	}
	h.cfg = posture.FeedConfig{FeedBase: posture.FeedBase{Name: "okta", Type: posture.FeedOktaHook}, SignalKeys: posture.SignalKeys{AuthorizationFile: write("hook.secret", oktaSecret)}, OktaKeys: posture.OktaKeys{OktaOrg: h.org.srv.URL, APITokenFile: write("api.token", "00api-token")}}
	h.open()
	return h
}

func (h *oktaHarness) open() {
	t := h.t
	db, err := posture.Open(filepath.Join(h.dir, "state"), posture.Options{Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	hook, err := NewOktaHook(h.cfg, db, Options{Registry: prometheus.NewRegistry(), Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	h.db, h.hook = db, hook
	h.srv = httptest.NewServer(hook)
	t.Cleanup(h.close)
}

func (h *oktaHarness) close() {
	if h.srv != nil {
		h.srv.Close()
		h.db.Close()
		h.srv = nil
	}
}

func (h *oktaHarness) do(method, secret string, body string, hdr map[string]string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", secret)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// riskEvent is a real-shaped user.risk.detect System Log event.
func riskEvent(uuid string, published time.Time, prev, level string) string {
	return fmt.Sprintf(`{
    "uuid": %q, "published": %q,
    "eventType": "user.risk.detect", "version": "0", "severity": "WARN",
    "displayMessage": "User risk detected",
    "actor": {"id": "0oa1sys000000", "type": "PublicClientApp", "alternateId": "system"},
    "target": [{"id": "00u9k2mQ7dLxYzP1h0g7", "type": "User", "alternateId": "J.Doe@acme.example", "displayName": "Jane Doe"}],
    "outcome": {"result": "SUCCESS"},
    "debugContext": {"debugData": {
      "risk": "{previousLevel=%s, level=%s, detectionName=Session Hijacking, reasons=New Device, New ASN, issuer=OKTA}",
      "traceId": "8d6e2b30-1c4f-5a9d-b7e3-2f0a9c1d4e55"}}
  }`, uuid, published.Format(time.RFC3339Nano), prev, level)
}

func lifecycleEvent(uuid, typ string, published time.Time) string {
	return fmt.Sprintf(`{"uuid": %q, "published": %q, "eventType": %q, "version": "0", "severity": "INFO",
    "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@acme.example"},
    "target": [{"id": "00u9k2mQ7dLxYzP1h0g7", "type": "User", "alternateId": "j.doe@acme.example"}],
    "outcome": {"result": "SUCCESS"}}`, uuid, published.Format(time.RFC3339Nano), typ)
}

func oktaDelivery(events ...string) string {
	return `{"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
  "contentType": "application/json", "source": "https://acme.okta.com/api/v1/eventHooks/who8r2x1cFqUoZ9Lk0h7",
  "eventId": "5c1d9e0a-7f43-4a8e-9b52-0d6f3f1a2b11", "eventTime": "2026-09-14T08:21:07.412Z",
  "data": {"events": [` + strings.Join(events, ",") + `]}}`
}

func TestOktaVerification(t *testing.T) {
	h := newOktaHarness(t)
	tests := []struct {
		name      string
		secret    string
		challenge string
		status    int
		body      string
	}{
		{"good", oktaSecret, "2sPn1QX7pZbLk9aE0Vt4", 200, `{"verification":"2sPn1QX7pZbLk9aE0Vt4"}`},
		{"escaped", oktaSecret, `a"<b>`, 200, `{"verification":"a\"\u003cb\u003e"}`},
		{"wrong secret", "nope", "x", 401, ""},
		{"no secret", "", "x", 401, ""},
		{"no challenge", oktaSecret, "", 400, ""},
		{"long challenge", oktaSecret, strings.Repeat("a", 257), 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.do(http.MethodGet, tt.secret, "", map[string]string{"X-Okta-Verification-Challenge": tt.challenge})
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.body != "" {
				if body != tt.body || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("body = %s (%s), want %s", body, resp.Header.Get("Content-Type"), tt.body)
				}
			}
		})
	}
}

func TestOktaDeliveries(t *testing.T) {
	h := newOktaHarness(t)
	const user = "j.doe@acme.example"
	steps := []struct {
		name   string
		secret string
		body   string
		status int
		risk   posture.RiskLevel
	}{
		{"low", oktaSecret, oktaDelivery(riskEvent("u1", t0, "LOW", "LOW")), 200, posture.RiskLow},
		{"high", oktaSecret, oktaDelivery(riskEvent("u2", t0.Add(time.Second), "LOW", "HIGH")), 200, posture.RiskHigh},
		{"wrong secret", "Bearer " + oktaSecret, oktaDelivery(riskEvent("u9", t0.Add(time.Minute), "HIGH", "LOW")), 401, posture.RiskHigh},
		{"back to low", oktaSecret, oktaDelivery(riskEvent("u3", t0.Add(2*time.Second), "HIGH", "LOW")), 200, posture.RiskLow},
		{"duplicate uuid", oktaSecret, oktaDelivery(riskEvent("u2", t0.Add(3*time.Second), "LOW", "HIGH")), 200, posture.RiskLow},
		{"older event", oktaSecret, oktaDelivery(riskEvent("u4", t0.Add(-time.Hour), "LOW", "HIGH")), 200, posture.RiskLow},
		{"not json", oktaSecret, `{"eventType":`, 400, posture.RiskLow},
		{"wrong envelope", oktaSecret, `{"eventType":"user.risk.detect","data":{"events":[]}}`, 400, posture.RiskLow},
		{"no events", oktaSecret, `{"eventType":"com.okta.event_hook"}`, 400, posture.RiskLow},
		// Strict JSON: a relay must not read another event than we do.
		{"duplicate member", oktaSecret, oktaDelivery(strings.Replace(riskEvent("u5", t0.Add(time.Hour), "LOW", "HIGH"), `"uuid"`, `"uuid":"u6","uuid"`, 1)), 400, posture.RiskLow},
		{"member in another case", oktaSecret, oktaDelivery(strings.Replace(riskEvent("u7", t0.Add(time.Hour), "LOW", "HIGH"), `"published"`, `"Published":"2020-01-01T00:00:00Z","published"`, 1)), 400, posture.RiskLow},
		{"bad events skipped", oktaSecret, oktaDelivery(`{"uuid":1}`, `{"uuid":"x","eventType":"user.risk.detect","published":"2026-09-14T08:20:00Z","target":[{"type":"User","alternateId":"a@b"}],"debugContext":{"debugData":{"risk":"{level=SEVERE}"}}}`, `"str"`), 200, posture.RiskLow},
	}
	for _, s := range steps {
		resp, body := h.do(http.MethodPost, s.secret, s.body, nil)
		if resp.StatusCode != s.status {
			t.Fatalf("%s: status = %d, want %d (%s)", s.name, resp.StatusCode, s.status, body)
		}
		if s.status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: error Content-Type = %q", s.name, resp.Header.Get("Content-Type"))
		}
		r := h.db.Risk(user)
		if r == nil || r.Level != s.risk {
			t.Fatalf("%s: risk = %+v, want %v", s.name, r, s.risk)
		}
	}
	if r := h.db.Risk(user); r.EventID != "u3" || r.Reasons[0] != "Session Hijacking" {
		t.Errorf("stored risk = %+v", r)
	}
	hl := h.hook.Health()
	if hl.Accepted != 5 || hl.Rejected != 6 || hl.Ignored != 3 || hl.LastEvent.IsZero() {
		t.Errorf("health = %+v, want 5 accepted, 6 rejected, 3 ignored", hl)
	}
	dup := oktaDelivery(riskEvent("u8", t0.Add(time.Hour), "LOW", "HIGH"))
	dup = strings.Replace(dup, `"eventType"`, `"EventType":"x","eventType"`, 1)
	if resp, body := h.do(http.MethodPost, oktaSecret, dup, nil); resp.StatusCode != 400 || !strings.Contains(body, `key \"EventType\"`) {
		t.Errorf("envelope with eventType twice = %d %s, want 400 naming the key", resp.StatusCode, body)
	}

	// Lifecycle events revoke the user's sessions issued before them. A
	// time to the whole second covers all of that second, as in SSF.
	for i, typ := range []string{"user.lifecycle.suspend", "user.session.end", "user.account.lock", "user.lifecycle.deactivate"} {
		at := t0.Add(time.Duration(i+1) * time.Minute)
		want := at.Add(time.Second)
		if i%2 == 1 {
			at = at.Add(250 * time.Millisecond) // as Okta sends it: milliseconds
			want = at
		}
		if resp, body := h.do(http.MethodPost, oktaSecret, oktaDelivery(lifecycleEvent("l"+typ, typ, at)), nil); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d (%s)", typ, resp.StatusCode, body)
		}
		if got := h.db.UserRevokedBefore(user); !got.Equal(want) {
			t.Errorf("%s: UserRevokedBefore = %v, want %v", typ, got, want)
		}
	}
}

func TestOktaPollFillsGapAndResumes(t *testing.T) {
	h := newOktaHarness(t)
	const user = "j.doe@acme.example"
	// The hook delivered u1; it missed u2, which the System Log has.
	if resp, body := h.do(http.MethodPost, oktaSecret, oktaDelivery(riskEvent("u1", t0, "LOW", "MEDIUM")), nil); resp.StatusCode != 200 {
		t.Fatalf("status %d (%s)", resp.StatusCode, body)
	}
	h.org.pages[""] = []string{riskEvent("u1", t0, "LOW", "MEDIUM"), riskEvent("u2", t0.Add(time.Minute), "MEDIUM", "HIGH")}
	h.org.next[""] = "c2"
	n, err := h.hook.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("Poll stored %d events, want 2 (one a duplicate)", n)
	}
	if r := h.db.Risk(user); r == nil || r.Level != posture.RiskHigh || r.EventID != "u2" {
		t.Fatalf("risk after poll = %+v, want high from u2", r)
	}
	if got := h.org.auth[0]; got != "SSWS 00api-token" {
		t.Errorf("Authorization = %q", got)
	}
	if q := h.org.reqs[0]; !strings.Contains(q, "since=") || !strings.Contains(q, "filter=") {
		t.Errorf("first query = %q, want since and filter", q)
	}

	// After a restart the poll resumes from the saved next link.
	h.close()
	h.org.pages["c2"] = []string{riskEvent("u3", t0.Add(2*time.Minute), "HIGH", "LOW")}
	h.org.next["c2"] = "c3"
	h.org.reqs = nil
	h.open()
	if _, err := h.hook.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := h.org.reqs[0]; !strings.Contains(q, "after=c2") || strings.Contains(q, "since=") {
		t.Errorf("query after restart = %q, want after=c2", q)
	}
	if r := h.db.Risk(user); r == nil || r.Level != posture.RiskLow {
		t.Errorf("risk after second poll = %+v, want low", r)
	}
	if got := h.db.Cursor(h.hook.cursorName()); !strings.HasSuffix(got, "after=c3") {
		t.Errorf("cursor = %q, want the c3 link", got)
	}
}

func TestOktaPollRefusesForeignLink(t *testing.T) {
	h := newOktaHarness(t)
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the API token was sent to a foreign host")
	}))
	defer foreign.Close()
	h.org.pages[""] = []string{riskEvent("u1", t0, "LOW", "HIGH")}
	h.org.next[""] = "x>; rel=\"self\", <" + foreign.URL + "/api/v1/logs?after=evil"
	if _, err := h.hook.Poll(context.Background()); err == nil {
		t.Error("Poll followed a next link to another host")
	}
}

func TestParseOktaRisk(t *testing.T) {
	tests := []struct{ in, level, prev, det string }{
		{"{previousLevel=LOW, level=MEDIUM, detectionName=Session Influenced User Risk, reasons=x, issuer=OKTA}", "MEDIUM", "LOW", "Session Influenced User Risk"},
		{"{level=HIGH}", "HIGH", "", ""},
		{"{reasons=level=HIGH, previousLevel=LOW}", "", "LOW", ""},
		{"{level=SEVERE}", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		got := ParseOktaRisk(tt.in)
		if got.Level != tt.level || got.PreviousLevel != tt.prev || got.DetectionName != tt.det {
			t.Errorf("ParseOktaRisk(%q) = %+v, want %s/%s/%s", tt.in, got, tt.level, tt.prev, tt.det)
		}
	}
}

func FuzzParseOktaHook(f *testing.F) {
	f.Add([]byte(oktaDelivery(riskEvent("u1", t0, "LOW", "HIGH"))))
	f.Add([]byte(oktaDelivery(lifecycleEvent("l1", "user.account.lock", t0))))
	f.Add([]byte(`{"eventType":"com.okta.event_hook","data":{"events":[{}]}}`))
	f.Add([]byte(`{"eventType":"com.okta.event_hook","data":{"events":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseOktaHook(b)
		if err != nil {
			return
		}
		if d.EventType != OktaEnvelopeType || d.Events == nil {
			t.Fatalf("accepted an envelope of type %q", d.EventType)
		}
		for _, raw := range d.Events {
			ev, err := ParseOktaEvent(raw)
			if err != nil {
				continue
			}
			if ev.UUID == "" || ev.EventType == "" {
				t.Fatal("accepted an event without a uuid or type")
			}
			r := ParseOktaRisk(ev.debugString("risk"))
			if r.Level != "" && r.Level != "LOW" && r.Level != "MEDIUM" && r.Level != "HIGH" {
				t.Fatalf("level %q", r.Level)
			}
		}
	})
}

package test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/quic-go/quic-go/http3"
)

// curlGet runs curl against the gateway and returns status, HTTP version
// and body.
func (e *env) curlGet(t *testing.T, proto, cert, key, path string, extra ...string) (int, string, string) {
	t.Helper()
	curl := requirePeer(t, "curl")
	args := []string{"-sS", "--max-time", "15", "--cacert", e.serverCA, proto,
		"-o", "-", "-w", "\n%{http_code} %{http_version}"}
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
	}
	args = append(args, extra...)
	args = append(args, e.url(path))
	out, code := run(t, curl, args...)
	if code != 0 {
		t.Fatalf("curl exit %d: %s", code, out)
	}
	i := strings.LastIndexByte(out, '\n')
	var status int
	var ver string
	fmt.Sscanf(out[i+1:], "%d %s", &status, &ver)
	return status, ver, out[:i]
}

func TestCurlDeviceCertificate(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)

	for _, tt := range []struct{ flag, version string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		t.Run(tt.flag, func(t *testing.T) {
			status, ver, body := e.curlGet(t, tt.flag, e.dev1Cert, e.dev1Key, "/hello",
				"-H", "X-Portcullis-User: mallory@example.test", "-H", "X-Debug-User: mallory")
			if status != 200 || ver != tt.version {
				t.Fatalf("with certificate: %d over HTTP/%s, want 200 over HTTP/%s: %s", status, ver, tt.version, body)
			}
			var got struct{ Headers map[string]string }
			json.Unmarshal([]byte(body), &got)
			if got.Headers["X-Portcullis-Device-Id"] != e.dev1ID || got.Headers["X-Portcullis-User"] != e.dev1User {
				t.Errorf("upstream identity headers = %v, want device %s user %s", got.Headers, e.dev1ID, e.dev1User)
			}
			if _, ok := got.Headers["X-Debug-User"]; ok {
				t.Errorf("configured header X-Debug-User reached the upstream")
			}
			if got.Headers["X-Forwarded-Proto"] != "https" || !strings.HasPrefix(got.Headers["Forwarded"], "for=127.0.0.1") {
				t.Errorf("forwarding headers = %q / %q", got.Headers["X-Forwarded-Proto"], got.Headers["Forwarded"])
			}

			status, _, body = e.curlGet(t, tt.flag, "", "", "/hello")
			if p := parseProblem(t, body); status != 401 || p.Reason != "device.certificate_missing" || p.RequestID == "" {
				t.Errorf("without certificate: %d %+v, want 401 device.certificate_missing", status, p)
			}
			status, _, body = e.curlGet(t, tt.flag, e.rogueCert, e.rogueKey, "/hello")
			if p := parseProblem(t, body); status != 403 || p.Reason != "device.certificate_invalid" {
				t.Errorf("rogue certificate: %d %+v, want 403 device.certificate_invalid", status, p)
			}
			status, _, _ = e.curlGet(t, tt.flag, "", "", "/public/x")
			if status != 200 {
				t.Errorf("public resource without certificate: %d, want 200", status)
			}
		})
	}
}

func TestHTTP3WithClientCertificate(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)

	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if alt := resp.Header.Get("Alt-Svc"); alt != fmt.Sprintf(`h3=":%d"; ma=86400`, e.port) {
		t.Errorf("Alt-Svc = %q", alt)
	}

	do := func(cert bool) (*http.Response, string) {
		tc := &tls.Config{RootCAs: poolFrom(t, e.serverCA)}
		if cert {
			tc.Certificates = []tls.Certificate{clientCert(t, e.dev1Cert, e.dev1Key)}
		}
		tr := &http3.Transport{TLSClientConfig: tc}
		defer tr.Close()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(e.url("/h3"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := do(true)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" || !contains(body, e.dev1ID) {
		t.Fatalf("h3 with certificate: %d %s %s", resp.StatusCode, resp.Proto, body)
	}
	resp, body = do(false)
	if resp.StatusCode != 401 || parseProblem(t, body).Reason != "device.certificate_missing" {
		t.Fatalf("h3 without certificate: %d %s", resp.StatusCode, body)
	}
}

func TestFeedTurnsDeviceBad(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	c := e.client(e.dev1Cert, e.dev1Key, true)
	get := func(accept string) (int, string) {
		req, _ := http.NewRequest("GET", e.url("/"), nil)
		req.Header.Set("Accept", accept)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("application/json"); code != 403 || parseProblem(t, body).Reason != "device.unknown" {
		t.Fatalf("before any posture: %d %s, want 403 device.unknown", code, body)
	}
	e.setCompliant(e.dev1ID, true)
	if code, body := get("application/json"); code != 200 {
		t.Fatalf("compliant: %d %s", code, body)
	}
	e.setCompliant(e.dev1ID, false)
	code, body := get("application/json")
	p := parseProblem(t, body)
	if code != 403 || p.Reason != "device.not_compliant" || p.Remediation != "https://uem.example.test/self-service" || p.Resource != "app" {
		t.Fatalf("non-compliant: %d %+v", code, p)
	}
	code, body = get("text/html,application/xhtml+xml,*/*;q=0.8")
	if code != 403 || !contains(body, "https://uem.example.test/self-service") || !contains(body, "device.not_compliant") {
		t.Fatalf("browser deny page: %d %s", code, body)
	}
	if v := g.metric(`portcullis_decisions_total{reason="device.not_compliant",resource="app",verdict="remediate"}`); v != "2" {
		t.Errorf("decisions metric for device.not_compliant = %q, want 2", v)
	}
}

func TestFeedDeliveries(t *testing.T) {
	e := newEnv(t)
	e.start()
	now := time.Now()
	id := "evt-" + uuid4()
	body := postureEvent(id, e.dev1ID, true, now)
	if code, b := e.postFeed(id, body, now, nil); code != 200 || !contains(b, `"applied":1`) {
		t.Fatalf("valid: %d %s", code, b)
	}
	if code, b := e.postFeed(id, body, now, nil); code != 200 || !contains(b, `"duplicate":1`) {
		t.Errorf("replayed: %d %s, want 200 duplicate", code, b)
	}
	wrong := make([]byte, 32)
	if code, b := e.postFeed("evt-x", postureEvent("evt-x", e.dev1ID, false, now), now, wrong); code != 401 {
		t.Errorf("bad signature: %d %s, want 401", code, b)
	}
	old := now.Add(-10 * time.Minute)
	if code, b := e.postFeed("evt-y", postureEvent("evt-y", e.dev1ID, false, now), old, nil); code != 401 {
		t.Errorf("stale timestamp: %d %s, want 401", code, b)
	}
	// Older observation arrives late: accepted, and must not win.
	if code, b := e.postFeed("evt-z", postureEvent("evt-z", e.dev1ID, false, now.Add(-time.Minute)), now, nil); code != 200 || !contains(b, `"out_of_order":1`) {
		t.Errorf("out of order: %d %s", code, b)
	}
	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after an out-of-order non-compliant event: %d, want 200 (the newer compliant record stands)", resp.StatusCode)
	}
	big := append(postureEvent("evt-big", e.dev1ID, true, now)[:0:0], make([]byte, 300<<10)...)
	if code, b := e.postFeed("evt-big", big, now, nil); code != 413 {
		t.Errorf("oversized: %d %s, want 413", code, b)
	}
	if code, b := e.postFeed("evt-bad", []byte(`{"spec":"portcullis.posture.v1"`), now, nil); code != 400 {
		t.Errorf("malformed: %d %s, want 400", code, b)
	}
}

func TestAssertionVerifiesAgainstJWKS(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)
	c := e.client(e.dev1Cert, e.dev1Key, true)
	resp, err := c.Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Headers map[string]string }
	readJSON(t, resp.Body, &got)
	resp.Body.Close()
	resp, err = c.Get(e.url("/.well-known/portcullis/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	readJSON(t, resp.Body, &jwks)
	resp.Body.Close()
	tok, err := jwt.ParseSigned(got.Headers["X-Portcullis-Assertion"], []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q: %v", got.Headers["X-Portcullis-Assertion"], err)
	}
	var claims jwt.Claims
	var extra struct {
		DeviceID string `json:"device_id"`
	}
	if err := tok.Claims(jwks, &claims, &extra); err != nil {
		t.Fatalf("assertion does not verify against the JWKS: %v", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: "portcullis", AnyAudience: jwt.Audience{"app"}, Subject: e.dev1User, Time: time.Now()}, 0); err != nil {
		t.Errorf("claims: %v", err)
	}
	if extra.DeviceID != e.dev1ID {
		t.Errorf("device_id claim = %q, want %q", extra.DeviceID, e.dev1ID)
	}
}

func TestWebsocketSurvivesReload(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost:"+fmt.Sprint(e.port)+"/ws",
		&websocket.DialOptions{HTTPClient: e.client(e.dev1Cert, e.dev1Key, false)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	echo := func(msg string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := ws.Read(ctx)
		if err != nil || string(b) != "echo: "+msg {
			t.Fatalf("echo %q = %q, %v", msg, b, err)
		}
	}
	echo("before")
	e.writeConfig(`  - name: added
    hosts: [localhost]
    paths: [/added]
    upstream: ` + e.upstream + `
    policy: {device: {certificate: "off"}}
`)
	g.signal(syscall.SIGHUP)
	g.waitLog("configuration reloaded")
	echo("after")
	resp, err := e.client("", "", true).Get(e.url("/added"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("resource added by reload: %d, want 200", resp.StatusCode)
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

func TestBadReloadKeepsServing(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	if err := os.WriteFile(e.cfgPath, []byte("listen: [\nresources: {nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog("configuration reload failed")
	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a bad reload: %d, want 200 from the running configuration", resp.StatusCode)
	}
	if v := g.metric(`portcullis_config_reloads_total{result="error"}`); v == "" || v == "0" {
		t.Errorf("reload error metric = %q", v)
	}
}

func TestRestartKeepsState(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, false)
	e.setCompliant(e.dev2ID, true)
	g.stop()
	e.start()
	for _, tt := range []struct {
		cert, key string
		want      int
	}{{e.dev1Cert, e.dev1Key, 403}, {e.dev2Cert, e.dev2Key, 200}} {
		resp, err := e.client(tt.cert, tt.key, true).Get(e.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("after restart: %d, want %d", resp.StatusCode, tt.want)
		}
	}
}

func TestStreamingAndUpstreamFailures(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)
	c := e.client(e.dev1Cert, e.dev1Key, true)

	// Server-sent events arrive as they are sent, not when the stream ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url("/sse"), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(resp.Body, buf, len("data: tick 0"))
	if err != nil || !strings.HasPrefix(string(buf[:n]), "data: tick 0") {
		t.Fatalf("first event = %q, %v", buf[:n], err)
	}
	resp.Body.Close()

	req, _ = http.NewRequest("GET", e.url("/slow"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 504 || parseProblem(t, string(b)).Reason != "upstream.timeout" {
		t.Errorf("slow upstream: %d %s, want 504 upstream.timeout", resp.StatusCode, b)
	}
}

func TestUpstreamDown(t *testing.T) {
	e := newEnv(t)
	e.upstream = "http://127.0.0.1:1"
	e.writeConfig("")
	e.start()
	e.setCompliant(e.dev1ID, true)
	req, _ := http.NewRequest("GET", e.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || parseProblem(t, string(b)).Reason != "upstream.unavailable" {
		t.Errorf("upstream down: %d %s, want 502 upstream.unavailable", resp.StatusCode, b)
	}
}

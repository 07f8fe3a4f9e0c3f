package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// nghttpStatus is the response status in nghttp -v output ("recv
// (stream_id=1) :status: 200").
var nghttpStatus = regexp.MustCompile(`:status: (\d{3})`)

// TestNghttpDeviceCertificate drives the gateway with nghttp2's own client
// (not Go's HTTP/2 stack): with the device certificate the request is
// proxied with the device's identity headers, without it it is denied.
func TestNghttpDeviceCertificate(t *testing.T) {
	nghttp := requirePeer(t, "nghttp")
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)

	get := func(cert, key, path string) (status, body string) {
		t.Helper()
		args := []string{"-v", "--no-dep", "--timeout=10"}
		if cert != "" {
			args = append(args, "--cert="+cert, "--key="+key)
		}
		out, code := run(t, nghttp, append(args, e.url(path))...)
		m := nghttpStatus.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("nghttp %s: no status (exit %d):\n%s", path, code, out)
		}
		// The body follows the response headers (the last "recv HEADERS"
		// block); the echo upstream answers JSON.
		if i := strings.Index(out, "{"); i >= 0 {
			body = out[i:]
			if j := strings.LastIndex(body, "}"); j >= 0 {
				body = body[:j+1]
			}
		}
		return m[1], body
	}

	status, body := get(e.dev1Cert, e.dev1Key, "/hello")
	if status != "200" {
		t.Fatalf("with certificate: %s, want 200: %s", status, body)
	}
	var got struct{ Headers map[string]string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("echo body: %v: %s", err, body)
	}
	if got.Headers["X-Portcullis-Device-Id"] != e.dev1ID || got.Headers["X-Portcullis-User"] != e.dev1User {
		t.Errorf("identity headers over nghttp = %v, want device %s user %s", got.Headers, e.dev1ID, e.dev1User)
	}
	if status, body := get("", "", "/hello"); status != "401" || !strings.Contains(body, "device.certificate_missing") {
		t.Errorf("without certificate: %s %s, want 401 device.certificate_missing", status, body)
	}
	if status, body := get(e.rogueCert, e.rogueKey, "/hello"); status != "403" || !strings.Contains(body, "device.certificate_invalid") {
		t.Errorf("rogue certificate: %s %s, want 403 device.certificate_invalid", status, body)
	}
}

// TestNgtcp2HTTP3 speaks HTTP/3 to the gateway with ngtcp2's example
// client over GnuTLS (a QUIC stack other than quic-go): the public
// resource is proxied, the device-only one answers 401.
func TestNgtcp2HTTP3(t *testing.T) {
	client := requirePeer(t, "gtlsclient")
	e := newEnv(t)
	e.start()

	// get returns the response status and the body, which the client
	// saves under dir by the URI's last path segment.
	get := func(path string) (status, body string) {
		t.Helper()
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Its debug output, with the response headers, goes to stderr.
		out, err := exec.CommandContext(ctx, client, "--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump",
			"--download="+dir, "--timeout=10s", "127.0.0.1", fmt.Sprint(e.port), e.url(path)).CombinedOutput()
		if err != nil {
			t.Logf("gtlsclient %s: %v", path, err)
		}
		m := ngtcp2Status.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("gtlsclient %s: no response status:\n%s", path, tail(string(out), 3000))
		}
		b, _ := os.ReadFile(filepath.Join(dir, filepath.Base(path)))
		return m[1], string(b)
	}
	if status, body := get("/public/h3-interop"); status != "200" || !strings.Contains(body, `"path":"/public/h3-interop"`) {
		t.Errorf("public resource over ngtcp2 HTTP/3: %s %s, want 200 and the echo", status, body)
	}
	if status, body := get("/hello"); status != "401" || !strings.Contains(body, "device.certificate_missing") {
		t.Errorf("device resource without a certificate over ngtcp2: %s %s, want 401 device.certificate_missing", status, body)
	}
}

// ngtcp2Status is the status line in the ngtcp2 client's debug output
// ("http: stream 0x0 [:status: 200]").
var ngtcp2Status = regexp.MustCompile(`\[:status: (\d{3})\]`)

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis/certs/devca"
)

// upstreamSeen is what a test upstream received.
type upstreamSeen struct {
	Resource string      `json:"resource"`
	URI      string      `json:"uri"`
	Path     string      `json:"path"`
	Host     string      `json:"host"`
	Header   http.Header `json:"header"`
}

// edgeGateway is a Gateway (not its listeners) with one upstream per
// resource, each answering with what it received as JSON, and with the
// listener's per-SNI client-certificate modes c.localhost: required and
// b.localhost: off.
func edgeGateway(t testing.TB) *Gateway {
	t.Helper()
	dir := t.TempDir()
	if _, err := devca.InitFiles(dir, "device-ca", "Edge Device CA"); err != nil {
		t.Fatal(err)
	}
	srv, err := devca.InitFiles(dir, "server-ca", "Edge Server CA")
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, _, err := srv.IssueServer([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "s.pem"), sc, 0o600)
	os.WriteFile(filepath.Join(dir, "s.key"), sk, 0o600)
	up := map[string]string{}
	for _, name := range []string{"root", "admin", "folded", "upgrades", "b", "c", "any"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(upstreamSeen{Resource: name, URI: r.RequestURI, Path: r.URL.Path, Host: r.Host, Header: r.Header})
		}))
		t.Cleanup(s.Close)
		up[name] = s.URL
	}
	cfg := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", hosts: {c.localhost: required, b.localhost: "off"}}]
admin: {listen: "off"}
tls: {certificates: [{cert: s.pem, key: s.key}]}
audit: {output: %s}
devices:
  cas:
    - name: corp
      bundle: device-ca.pem
      device_id: {from: uri_san, pattern: '^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$'}
headers: {strip: [X-Debug-User]}
resources:
  - {name: root, hosts: [a.localhost], upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: admin, hosts: [a.localhost], paths: [/admin], upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: folded, hosts: [a.localhost], paths: [/Private], case_insensitive: true, upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: upgrades, hosts: [u.localhost], upgrades: [websocket, h2c], upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: b, hosts: [b.localhost], upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: c, hosts: [c.localhost], upstream: %s, policy: {device: {certificate: "off"}}}
  - {name: any, hosts: ["*"], upstream: %s, policy: {device: {certificate: "off"}}}
`, filepath.Join(dir, "decisions.log"), up["root"], up["admin"], up["folded"], up["upgrades"], up["b"], up["c"], up["any"])
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	g, err := New(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go g.audit.Run(ctx)
	t.Cleanup(func() { cancel(); g.store.Close() })
	return g
}

// edgeRequest is a request as the server hands it over after parsing
// target (a request-target as sent: "/x", "host:port" for CONNECT) on a
// TLS connection to sni.
func edgeRequest(t testing.TB, method, sni, host, target string, h http.Header) *http.Request {
	t.Helper()
	var u *url.URL
	if method == http.MethodConnect && !strings.HasPrefix(target, "/") {
		u = &url.URL{Host: target}
	} else {
		var err error
		if u, err = url.ParseRequestURI(target); err != nil {
			t.Fatalf("parsing %q: %v", target, err)
		}
	}
	if h == nil {
		h = http.Header{}
	}
	r := &http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: host,
		Header: h, RemoteAddr: "127.0.0.1:50000", RequestURI: target, Body: http.NoBody,
		TLS: &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, ServerName: sni}}
	return r.WithContext(withConnInfo(context.Background()))
}

// serve runs r through g and returns the status, the problem's reason
// (for a refusal) and what the upstream saw (when proxied).
func serve(t testing.TB, g *Gateway, r *http.Request) (int, string, *upstreamSeen) {
	t.Helper()
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	var seen upstreamSeen
	if json.Unmarshal(w.Body.Bytes(), &seen) == nil && seen.Resource != "" {
		return w.Code, "", &seen
	}
	var p struct{ Reason string }
	json.Unmarshal(w.Body.Bytes(), &p)
	return w.Code, p.Reason, nil
}

// A client cannot pose as anyone: every header an upstream could read as
// an identity header is removed, however it is spelt, and the gateway's
// own survive a Connection header that names them (it used to make
// httputil.ReverseProxy delete them as hop-by-hop).
func TestIdentityHeadersCannotBeForged(t *testing.T) {
	g := edgeGateway(t)
	h := http.Header{
		"Connection":              {"close, X-Portcullis-User, X-Portcullis-Assertion, X-Portcullis-Request-Id"},
		"X-Portcullis-User":       {"admin@corp"},
		"X_portcullis_user":       {"admin@corp"},
		"X_PORTCULLIS_GROUPS":     {"admins"},
		"X-Portcullis-":           {"bare"},
		"X-Portcullis-Assertion":  {"forged"},
		"X-Portcullis-Request-Id": {"forged"},
		"X_debug_user":            {"mallory"},
		"X-Debug-User":            {"mallory"},
		"X-Other":                 {"kept"},
	}
	status, reason, seen := serve(t, g, edgeRequest(t, "GET", "a.localhost", "a.localhost", "/x", h))
	if status != 200 || seen == nil {
		t.Fatalf("status %d %s, want 200 from the upstream", status, reason)
	}
	for k, v := range seen.Header {
		f := foldHeaderName(k)
		switch {
		case f == "x-portcullis-request-id" || f == "x-portcullis-assertion":
			if len(v) != 1 || v[0] == "forged" || k != http.CanonicalHeaderKey(f) {
				t.Errorf("upstream got %s: %q, want the gateway's one value", k, v)
			}
		case strings.HasPrefix(f, "x-portcullis-") || f == "x-debug-user":
			t.Errorf("upstream got the client's %s: %q", k, v)
		}
	}
	if seen.Header.Get(hdrRequestID) == "" || seen.Header.Get(hdrAssertion) == "" {
		t.Errorf("upstream got no request id or assertion: %v", seen.Header)
	}
	if seen.Header.Get("X-Other") != "kept" {
		t.Errorf("an ordinary header was dropped: %v", seen.Header)
	}
}

// Each edge rule, through the whole handler: what is refused, with which
// status and reason, and that a refused request never reaches an upstream.
func TestEdgeRefusals(t *testing.T) {
	g := edgeGateway(t)
	tests := []struct {
		name                  string
		method, sni, host, in string
		status                int
		reason                string
	}{
		{"authority with a forged Forwarded element", "GET", "b.localhost", `b.localhost:1", for=6.6.6.6;host="a.localhost`, "/", 400, reasonInvalidHost},
		{"authority with a second host", "GET", "b.localhost", "b.localhost:1,evil.example", "/", 400, reasonInvalidHost},
		{"two trailing dots", "GET", "a.localhost", "a.localhost..", "/", 400, reasonInvalidHost},
		{"encoded dot", "GET", "a.localhost", "a%2elocalhost", "/", 400, reasonInvalidHost},
		{"port out of range", "GET", "a.localhost", "a.localhost:65536", "/", 400, reasonInvalidHost},
		{"empty host", "GET", "", "", "/", 400, reasonInvalidHost},
		{"NUL", "GET", "a.localhost", "a.localhost", "/admin%00", 400, reasonInvalidPath},
		{"encoded backslash", "GET", "a.localhost", "a.localhost", "/public/..%5cadmin", 400, reasonInvalidPath},
		{"double encoding", "GET", "a.localhost", "a.localhost", "/%2561dmin", 400, reasonInvalidPath},
		{"encoded slash", "GET", "a.localhost", "a.localhost", "/admin%2fx", 400, reasonInvalidPath},
		{"segment parameter", "GET", "a.localhost", "a.localhost", "/admin;x", 400, reasonInvalidPath},
		{"dot-dot segment parameter", "GET", "a.localhost", "a.localhost", "/x/..;/admin", 400, reasonInvalidPath},
		{"trailing dot routes elsewhere", "GET", "a.localhost", "a.localhost", "/admin.", 400, reasonInvalidPath},
		{"trailing space routes elsewhere", "GET", "a.localhost", "a.localhost", "/admin%20", 400, reasonInvalidPath},
		{"plain CONNECT", "CONNECT", "a.localhost", "a.localhost:443", "a.localhost:443", 405, reasonMethodNotAllowed},
		{"host needing a certificate on a connection without", "GET", "b.localhost", "c.localhost", "/", 421, reasonMisdirected},
		{"host needing a certificate on a connection without SNI", "GET", "", "c.localhost", "/", 421, reasonMisdirected},
		{"host needing a certificate, by IP", "GET", "", "c.localhost:8443", "/", 421, reasonMisdirected},
		{"feed path with a trailing slash", "POST", "a.localhost", "a.localhost", "/.portcullis/feeds/uem/", 404, "route.not_found"},
		{"unknown reserved path", "GET", "a.localhost", "a.localhost", "/.portcullis/nothing", 404, "route.not_found"},
		{"reserved path in another case", "GET", "a.localhost", "a.localhost", "/.PORTCULLIS/nothing", 404, "route.not_found"},
		{"reserved root", "GET", "a.localhost", "a.localhost", "/.portcullis", 404, "route.not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			g.ServeHTTP(w, edgeRequest(t, tt.method, tt.sni, tt.host, tt.in, nil))
			var p struct {
				Reason    string `json:"reason"`
				RequestID string `json:"request_id"`
				Resource  string `json:"resource"`
			}
			json.Unmarshal(w.Body.Bytes(), &p)
			if w.Code != tt.status || p.Reason != tt.reason || p.RequestID == "" {
				t.Errorf("%s %s %s = %d %s, want %d %s", tt.method, tt.host, tt.in, w.Code, w.Body, tt.status, tt.reason)
			}
			if tt.status == 405 && w.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

// What the router matched is what the upstream receives: host and path
// in their normal form, and nothing the router did not see.
func TestRoutedIsForwarded(t *testing.T) {
	g := edgeGateway(t)
	tests := []struct {
		sni, host, in string
		resource      string
		uri, wantHost string
	}{
		{"a.localhost", "a.localhost", "/admin/x", "admin", "/admin/x", "a.localhost"},
		{"a.localhost", "A.LOCALHOST.", "/admin", "admin", "/admin", "a.localhost"},
		{"a.localhost", "a.localhost.:8443", "/admin", "admin", "/admin", "a.localhost:8443"},
		{"a.localhost", "a.localhost", "/x/../admin", "admin", "/admin", "a.localhost"},
		{"a.localhost", "a.localhost", "//admin", "admin", "/admin", "a.localhost"},
		{"a.localhost", "a.localhost", "/%61dmin", "admin", "/admin", "a.localhost"},
		{"a.localhost", "a.localhost", "/ADMIN", "root", "/ADMIN", "a.localhost"}, // case-sensitive by default
		{"a.localhost", "a.localhost", "/PRIVATE/x", "folded", "/PRIVATE/x", "a.localhost"},
		{"a.localhost", "a.localhost", "/x.", "root", "/x.", "a.localhost"}, // "/x" routes the same
		{"a.localhost", "a.localhost", "/a%20b?q=1", "root", "/a%20b?q=1", "a.localhost"},
		{"a.localhost", "a.localhost", "/a%3fb", "root", "/a%3Fb", "a.localhost"},
		{"b.localhost", "b.localhost", "/", "b", "/", "b.localhost"},
		{"c.localhost", "c.localhost", "/", "c", "/", "c.localhost"},
		{"a.localhost", "x.localhost", "/", "any", "/", "x.localhost"}, // same TLS configuration: connection reuse
		{"", "127.0.0.1:8443", "/", "any", "/", "127.0.0.1:8443"},
		{"", "[::1]:8443", "/", "any", "/", "[::1]:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.in, func(t *testing.T) {
			status, reason, seen := serve(t, g, edgeRequest(t, "GET", tt.sni, tt.host, tt.in, nil))
			if status != 200 || seen == nil {
				t.Fatalf("status %d %s, want 200 from %s", status, reason, tt.resource)
			}
			if seen.Resource != tt.resource || seen.URI != tt.uri || seen.Host != tt.wantHost {
				t.Errorf("upstream %s got %s (Host %s), want %s to get %s (Host %s)", seen.Resource, seen.URI, seen.Host, tt.resource, tt.uri, tt.wantHost)
			}
			if xfh := seen.Header.Get("X-Forwarded-Host"); xfh != tt.wantHost {
				t.Errorf("X-Forwarded-Host = %q, want %q", xfh, tt.wantHost)
			}
			if fwd, want := seen.Header.Get("Forwarded"), forwardedElement("127.0.0.1", tt.wantHost); fwd != want {
				t.Errorf("Forwarded = %q, want %q", fwd, want)
			}
		})
	}
}

// Only the Upgrade protocols a resource takes reach its upstream
// (websocket by default); HTTP2-Settings goes with a refused h2c offer.
func TestUpgradeFiltering(t *testing.T) {
	g := edgeGateway(t)
	tests := []struct {
		host, upgrade, connection string
		wantUpgrade, wantSettings bool
	}{
		{"a.localhost", "websocket", "Upgrade", true, false},
		{"a.localhost", "WebSocket", "upgrade", true, false},
		{"a.localhost", "h2c", "Upgrade, HTTP2-Settings", false, false},
		{"a.localhost", "h2c", "Upgrade", false, false},
		{"a.localhost", "evil/1.0", "Upgrade", false, false},
		{"a.localhost", "websocket, h2c", "Upgrade", false, false},
		{"u.localhost", "h2c", "Upgrade, HTTP2-Settings", true, true},
		{"u.localhost", "h2c", "Upgrade", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+tt.upgrade+" "+tt.connection, func(t *testing.T) {
			h := http.Header{"Upgrade": {tt.upgrade}, "Connection": {tt.connection}, "Http2-Settings": {"AAMAAABkAAQAAP__"}}
			status, reason, seen := serve(t, g, edgeRequest(t, "GET", tt.host, tt.host, "/", h))
			if status != 200 || seen == nil {
				t.Fatalf("status %d %s, want 200", status, reason)
			}
			if got := seen.Header.Get("Upgrade") != ""; got != tt.wantUpgrade {
				t.Errorf("upstream got Upgrade %q, want forwarded=%v", seen.Header.Get("Upgrade"), tt.wantUpgrade)
			}
			if got := seen.Header.Get("Http2-Settings") != ""; got != tt.wantSettings {
				t.Errorf("upstream got HTTP2-Settings %q, want forwarded=%v", seen.Header.Get("Http2-Settings"), tt.wantSettings)
			}
		})
	}
}

func TestForwardedElement(t *testing.T) {
	tests := []struct{ ip, host, want string }{
		{"127.0.0.1", "a.localhost", "for=127.0.0.1;host=a.localhost;proto=https"},
		{"127.0.0.1", "a.localhost:8443", `for=127.0.0.1;host="a.localhost:8443";proto=https`},
		{"::1", "[::1]:8443", `for="[::1]";host="[::1]:8443";proto=https`},
		{"1.2.3.4", `a"b\c`, `for=1.2.3.4;host="a\"b\\c";proto=https`},
		{"1.2.3.4", "", `for=1.2.3.4;host="";proto=https`},
	}
	for _, tt := range tests {
		if got := forwardedElement(tt.ip, tt.host); got != tt.want {
			t.Errorf("forwardedElement(%q, %q) = %s, want %s", tt.ip, tt.host, got, tt.want)
		}
	}
}

// FuzzRouteForward is the differential test of routing and forwarding:
// for any request path, the upstream that receives the request is the
// one the router picks for the path that upstream received, and servers
// that read paths differently (dropping trailing dots and spaces, folding
// case on the case-insensitive resource) pick the same one.
func FuzzRouteForward(f *testing.F) {
	for _, s := range []string{"/", "/admin", "/admin/x", "/ADMIN", "/admin.", "/admin%20", "/x/../admin",
		"/%61dmin", "/admin;x", "/private/./x", "/PRIVATE", "//admin", "/a%3fb", "/admin..", "/admin. /x"} {
		f.Add(s)
	}
	g := edgeGateway(f)
	rt := g.cur.Load().router
	f.Fuzz(func(t *testing.T, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, "?#") {
			return
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return // the server answers 400 before the gateway sees it
		}
		status, _, seen := serve(t, g, edgeRequest(t, "GET", "a.localhost", "a.localhost", target, nil))
		if seen == nil {
			if status != 400 && status != 404 {
				t.Fatalf("%q: status %d, neither proxied nor refused", target, status)
			}
			return
		}
		got, err := url.ParseRequestURI(seen.URI) // the request-target, as the upstream got it
		if err != nil {
			t.Fatalf("%q: upstream got %q: %v", target, seen.URI, err)
		}
		res := rt.match("a.localhost", got.Path)
		if res == nil || res.name != seen.Resource {
			t.Fatalf("%q: upstream %s got %q, which routes to %v", target, seen.Resource, got.Path, res)
		}
		if alt := rt.match("a.localhost", trimSegments(got.Path)); alt != res {
			t.Fatalf("%q: %q routes to %s, and to %s with trailing dots dropped", target, got.Path, res.name, alt.name)
		}
		if alt := rt.match("a.localhost", strings.ToUpper(got.Path)); res.cfg.CaseInsensitive && alt != res {
			t.Fatalf("%q: %q routes to %s, and to %s in upper case", target, got.Path, res.name, alt.name)
		}
		if u, _, perr := normalizePath(got); perr != nil || u != got.Path {
			t.Fatalf("%q: upstream path %q is not normal (%q, %v)", target, got.Path, u, perr)
		}
	})
}

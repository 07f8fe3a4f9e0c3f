package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/coder/websocket"

	"portcullis/certs/devca"
	"portcullis/posture/feeds"
)

// env is one end-to-end setup: certificates, a feed secret, an upstream,
// ports, and a configuration file for the gateway.
type env struct {
	t        testing.TB
	dir      string
	port     int
	admin    string
	upstream string // http://127.0.0.1:N
	appWhen  string // the app resource's policy.when, if any
	console  bool   // serve the admin console

	serverCA            string
	dev1Cert, dev1Key   string
	dev1ID, dev1User    string
	dev1Serial          string
	dev2Cert, dev2Key   string
	dev2ID              string
	rogueCert, rogueKey string
	feedKey             []byte
	cfgPath             string
	adminToken          string               // path of the admin API token file
	reported            map[string]time.Time // when setCompliant last reported each device
}

func uuid4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.port = freePort(t)
	e.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))

	write := func(name string, b []byte) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sca, err := devca.InitFiles(e.dir, "server-ca", "E2E Server CA")
	if err != nil {
		t.Fatal(err)
	}
	e.serverCA = sca.CertFile()
	c, k, _, err := sca.IssueServer([]string{"localhost", "127.0.0.1", "::1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write("server.pem", c)
	write("server.key", k)

	dca, err := devca.InitFiles(e.dir, "device-ca", "E2E Device CA")
	if err != nil {
		t.Fatal(err)
	}
	e.dev1ID, e.dev1User = uuid4(), "alice@example.test"
	c, k, e.dev1Serial, err = dca.IssueDevice(e.dev1ID, e.dev1User, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.dev1Cert, e.dev1Key = write("dev1.pem", c), write("dev1.key", k)
	e.dev2ID = uuid4()
	c, k, _, err = dca.IssueDevice(e.dev2ID, "bob@example.test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.dev2Cert, e.dev2Key = write("dev2.pem", c), write("dev2.key", k)

	rogue, err := devca.InitFiles(t.TempDir(), "rogue", "Rogue CA")
	if err != nil {
		t.Fatal(err)
	}
	c, k, _, err = rogue.IssueDevice(uuid4(), "mallory@example.test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.rogueCert, e.rogueKey = write("rogue.pem", c), write("rogue.key", k)

	e.feedKey = make([]byte, 32)
	rand.Read(e.feedKey)
	write("feed.secret", []byte("whsec_"+base64.StdEncoding.EncodeToString(e.feedKey)+"\n"))
	e.adminToken = write("admin.token", []byte(uuid4()+"\n"))

	e.upstream = startUpstream(t)
	e.cfgPath = filepath.Join(e.dir, "portcullis.yaml")
	e.writeConfig("")
	return e
}

const configTemplate = `
listen:
  - address: 127.0.0.1:{{.Port}}
    client_auth: optional
admin: {listen: "{{.Admin}}", token_file: admin.token{{if .Console}}, console: {enabled: true}{{end}}}
state: {dir: state}
tls:
  certificates: [{cert: server.pem, key: server.key}]
devices:
  cas:
    - name: corp
      bundle: device-ca.pem
      device_id: {from: uri_san, pattern: '^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$'}
      user: {from: email_san}
posture:
  max_age: 10m
  feeds:
    - {name: uem, type: webhook, secret_file: feed.secret}
headers:
  strip: [X-Debug-User]
resources:
  - name: app
    hosts: [localhost, 127.0.0.1]
    upstream: {{.Upstream}}
    remediation: https://uem.example.test/self-service
    timeouts: {response_header: 2s}
    policy:
      login: none
      device: {certificate: required, managed: true, compliant: true, max_threat: medium}
{{- if .AppWhen}}
      when: '{{.AppWhen}}'
{{- end}}
  - name: public
    hosts: [localhost]
    paths: [/public]
    upstream: {{.Upstream}}
    policy:
      device: {certificate: "off"}
{{.Extra}}`

// writeConfig (re)writes the gateway's configuration; extra is appended to
// the resources list.
func (e *env) writeConfig(extra string) {
	e.t.Helper()
	var b bytes.Buffer
	template.Must(template.New("").Parse(configTemplate)).Execute(&b, map[string]any{
		"Port": e.port, "Admin": e.admin, "Upstream": e.upstream, "Extra": extra, "AppWhen": e.appWhen, "Console": e.console,
	})
	// Write then rename, as editors and config managers do: the gateway
	// never reads a half-written file.
	tmp := e.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) start() *gatewayProc { return startGateway(e.t, e.cfgPath, e.admin) }

func (e *env) url(path string) string { return fmt.Sprintf("https://localhost:%d%s", e.port, path) }

// client returns an HTTP client trusting the server CA, presenting cert
// (if not empty), speaking HTTP/2 when h2 is true.
func (e *env) client(cert, key string, h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: poolFrom(e.t, e.serverCA)}
	if cert != "" {
		tc.Certificates = []tls.Certificate{clientCert(e.t, cert, key)}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// postureEvent builds a portcullis.posture.v1 event.
func postureEvent(id, device string, compliant bool, observed time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"spec": "portcullis.posture.v1", "event_id": id, "source": "uem",
		"observed_at": observed.UTC().Format(time.RFC3339Nano),
		"device":      map[string]any{"id": device},
		"managed":     true, "compliant": compliant,
		"threat": map[string]any{"level": "none"}, "state": "active",
	})
	return b
}

// postFeed signs body as the uem feed (with key, or e.feedKey) at ts and
// posts it; it returns the status and body.
func (e *env) postFeed(id string, body []byte, ts time.Time, key []byte) (int, string) {
	e.t.Helper()
	if key == nil {
		key = e.feedKey
	}
	req, _ := http.NewRequest(http.MethodPost, e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	req.Header.Set("webhook-signature", feeds.SignWebhook(key, id, ts, body))
	resp, err := e.client("", "", false).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func signFeed(key []byte, id string, ts time.Time, body []byte) string {
	return feeds.SignWebhook(key, id, ts, body)
}

// setCompliant posts a fresh event for device and requires a 200.
func (e *env) setCompliant(device string, compliant bool) {
	e.t.Helper()
	// Posture is ordered by whole seconds and a tie keeps the more
	// restrictive report (docs/feeds.md): a device that turns compliant
	// again reports it in a later second than the report it overturns.
	now := time.Now()
	if last, ok := e.reported[device]; ok && now.Unix() <= last.Unix() {
		time.Sleep(time.Until(last.Truncate(time.Second).Add(time.Second)))
		now = time.Now()
	}
	if e.reported == nil {
		e.reported = map[string]time.Time{}
	}
	e.reported[device] = now
	id := "evt-" + uuid4()
	code, body := e.postFeed(id, postureEvent(id, device, compliant, now), now, nil)
	if code != 200 {
		e.t.Fatalf("feed post = %d %s, want 200", code, body)
	}
}

// startUpstream runs the application behind the gateway: it echoes the
// request it got as JSON, streams server-sent events at /sse, echoes
// websocket messages at /ws, and answers /slow after 5 s.
func startUpstream(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Consume the body before answering, as an application would: a
		// response sent before the request body arrived would let h2spec's
		// content-length mismatch case (8.1.2.6) race the gateway's reply.
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := map[string]string{}
		for k := range r.Header {
			h[k] = r.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "host": r.Host, "headers": h, "body_bytes": n})
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: tick %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	wsEcho := func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/ws", wsEcho)
	mux.HandleFunc("/strict/ws", wsEcho)
	mux.HandleFunc("/risky/ws", wsEcho)
	mux.HandleFunc("/delay", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
			w.Write([]byte("finished"))
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// problem is an RFC 9457 body as the gateway writes it.
type problem struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Status      int    `json:"status"`
	Detail      string `json:"detail"`
	Reason      string `json:"reason"`
	RequestID   string `json:"request_id"`
	Resource    string `json:"resource"`
	Remediation string `json:"remediation"`
}

func parseProblem(t testing.TB, body string) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem document: %q", body)
	}
	return p
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

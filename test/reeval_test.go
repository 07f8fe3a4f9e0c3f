package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// liveConns opens, for one device, a websocket (HTTP/1.1 upgrade), a
// server-sent event stream over HTTP/2, and a second HTTP/2 stream, and
// returns a function that reports which of them are still alive.
func (e *env) liveConns(t *testing.T, cert, key string) (alive func() map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d/ws", e.port),
		&websocket.DialOptions{HTTPClient: e.client(cert, key, false)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	h2 := e.client(cert, key, true)
	h2.Timeout = 0
	stream := func() (*bufio.Reader, *http.Response) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url("/sse"), nil)
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("stream: %d %s", resp.StatusCode, resp.Proto)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewReader(resp.Body), resp
	}
	sse, _ := stream()
	h2s, _ := stream()

	return func() map[string]bool {
		out := map[string]bool{}
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		defer wcancel()
		err := ws.Write(wctx, websocket.MessageText, []byte("ping"))
		if err == nil {
			_, _, err = ws.Read(wctx)
		}
		out["websocket"] = err == nil
		read := func(r *bufio.Reader) bool {
			// The upstream sends an event every 100 ms; a live stream
			// delivers the next one, a closed one ends in an error.
			for range 3 {
				l, err := r.ReadString('\n')
				if err != nil {
					return false
				}
				if strings.HasPrefix(l, "data: tick") {
					return true
				}
			}
			return true
		}
		out["sse"] = read(sse)
		out["h2stream"] = read(h2s)
		return out
	}
}

func TestReevaluationClosesLiveConnections(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	e.setCompliant(e.dev2ID, true)
	alice := e.liveConns(t, e.dev1Cert, e.dev1Key)
	bob := e.liveConns(t, e.dev2Cert, e.dev2Key)
	for name, ok := range alice() {
		if !ok {
			t.Fatalf("%s not alive before the signal", name)
		}
	}

	e.setCompliant(e.dev1ID, false) // the UEM says alice's device went bad
	waitClosed(t, alice, "alice's %s still open after her device became non-compliant")
	for name, ok := range bob() {
		if !ok {
			t.Errorf("bob's %s was closed too", name)
		}
	}
	if v := g.metric(`portcullis_reevaluation_closed_total{reason="device.not_compliant"}`); v != "3" {
		t.Errorf("closed metric = %q, want 3", v)
	}
	// The next request from alice's device gets the deny page with the reason.
	req, _ := http.NewRequest("GET", e.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client(e.dev1Cert, e.dev1Key, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || parseProblem(t, string(b)).Reason != "device.not_compliant" {
		t.Errorf("next request: %d %s", resp.StatusCode, b)
	}
}

func TestStalePostureClosesLiveConnections(t *testing.T) {
	e := newEnv(t)
	// A resource whose posture may be at most 2 s old: the re-evaluator's
	// timer, not a request, must notice when it ages out.
	e.writeConfig(`  - name: strict
    hosts: [localhost]
    paths: [/strict]
    upstream: ` + e.upstream + `
    policy:
      login: none
      device: {certificate: required, max_age: 2s}
`)
	e.start()
	e.setCompliant(e.dev1ID, true)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://localhost:%d/strict/ws", e.port),
		&websocket.DialOptions{HTTPClient: e.client(e.dev1Cert, e.dev1Key, false)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	start := time.Now()
	_, _, err = ws.Read(ctx) // the upstream sends nothing unprompted: this returns when the gateway closes it
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("websocket not closed after posture went stale: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("closed after %v", took)
	}
}

// waitClosed waits up to 5 s for every connection alive reports on to be
// closed, and reports each still open with msg (a format for its name).
func waitClosed(t *testing.T, alive func() map[string]bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]bool
	for time.Now().Before(deadline) {
		got = alive()
		if !got["websocket"] && !got["sse"] && !got["h2stream"] {
			break
		}
	}
	for name, ok := range got {
		if ok {
			t.Errorf(msg, name)
		}
	}
}

// TestReloadReevaluatesLiveConnections: live requests are re-decided
// under the reloaded policy of their resource, so a reload that tightens
// it closes the websocket, SSE stream and HTTP/2 stream it no longer
// allows, and new requests get the deny with the new reason.
func TestReloadReevaluatesLiveConnections(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)
	alice := e.liveConns(t, e.dev1Cert, e.dev1Key)
	for name, ok := range alice() {
		if !ok {
			t.Fatalf("%s not alive before the reload", name)
		}
	}
	// A reload that leaves the policy alone keeps them open.
	e.writeConfig("")
	g.signal(syscall.SIGHUP)
	g.waitLog("configuration reloaded")
	g.waitSweeps(2) // a pass that may have begun before the reload, and one after it
	for name, ok := range alice() {
		if !ok {
			t.Fatalf("%s closed by a reload that changed nothing", name)
		}
	}

	e.appWhen = `device.platform == "Windows"` // the device reports no platform
	e.writeConfig("")
	g.signal(syscall.SIGHUP)
	waitClosed(t, alice, "alice's %s still open after the reload tightened the policy")
	g.waitLog(`"reason":"policy.expression_denied"`)
	resp, err := e.client(e.dev1Cert, e.dev1Key, false).Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("new request after the reload: %d, want 403", resp.StatusCode)
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"portcullis/gateway/console"
)

// wsEcho is an upstream websocket endpoint that echoes every message.
func wsEcho(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	return up
}

// maskedFrame is a client's binary websocket frame (RFC 6455 §5.2)
// carrying p, masked with a zero key (which leaves p as it is).
func maskedFrame(p []byte) []byte {
	b := []byte{0x82, 0x80 | 126, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(p)))
	b = append(b, 0, 0, 0, 0)
	return append(b, p...)
}

// wsRecord is what a websocket's decision record says of its bytes.
type wsRecord struct {
	Method   string `json:"method"`
	Protocol string `json:"protocol"`
	Status   int    `json:"status"`
	BytesOut int64  `json:"bytes_out"`
	BytesIn  int64  `json:"bytes_in"`
}

// TestWebsocketCounted opens a websocket through the gateway with an
// HTTP/1.1 Upgrade (hijacked by the proxy) and with extended CONNECT over
// HTTP/2, and sends one 1,000-byte message that the upstream echoes. The
// live view counts the frames both ways while the websocket is open, and
// its decision record has the status the client got (101, or 200 for
// extended CONNECT) and the bytes both ways.
func TestWebsocketCounted(t *testing.T) {
	if !strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		// Go's HTTP/2 server offers extended CONNECT only with this
		// setting, read once at start (portcullis serve sets it the
		// same way): run the test again in a process that has it.
		cmd := exec.Command(os.Args[0], "-test.run=^TestWebsocketCounted$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG="+os.Getenv("GODEBUG")+",http2xconnect=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("in a process with GODEBUG=http2xconnect=1:\n%s", out)
		return
	}
	up := wsEcho(t)
	fx := newFixture(t, up.URL, "[127.0.0.1]", "{login: none, device: {certificate: off}}", "")
	front := httptest.NewUnstartedServer(fx.g)
	front.EnableHTTP2 = true
	front.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return withConnInfo(ctx) }
	front.StartTLS()
	defer front.Close()
	msg := bytes.Repeat([]byte("x"), 1000)
	const frameLen = 1000 + 4 // the server's unmasked frame: header, 16-bit length, payload

	// live returns the one live request's bytes sent and received.
	live := func() (out, in int64) {
		consoleSource{fx.g}.Live(func(c *console.Conn) bool { out, in = c.BytesOut, c.BytesIn; return false })
		return out, in
	}
	tests := []struct {
		name       string
		open       func(t *testing.T) (closeWS func())
		wantStatus int
		wantProto  string
	}{
		{"HTTP/1.1 Upgrade", func(t *testing.T) func() {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			t.Cleanup(tr.CloseIdleConnections)
			c, _, err := websocket.Dial(t.Context(), "wss"+strings.TrimPrefix(front.URL, "https")+"/ws",
				&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Write(t.Context(), websocket.MessageBinary, msg); err != nil {
				t.Fatal(err)
			}
			if _, b, err := c.Read(t.Context()); err != nil || !bytes.Equal(b, msg) {
				t.Fatalf("echo: %d bytes, %v", len(b), err)
			}
			return func() { c.Close(websocket.StatusNormalClosure, "") }
		}, http.StatusSwitchingProtocols, "HTTP/1.1"},
		{"HTTP/2 extended CONNECT", func(t *testing.T) func() {
			tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			t.Cleanup(tr.CloseIdleConnections)
			pr, pw := io.Pipe()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodConnect, front.URL+"/ws", pr)
			req.Header.Set(":protocol", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("extended CONNECT: %s", resp.Status)
			}
			if _, err := pw.Write(maskedFrame(msg)); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, frameLen)
			if _, err := io.ReadFull(resp.Body, echo); err != nil || !bytes.Equal(echo[4:], msg) {
				t.Fatalf("echo: %v", err)
			}
			return func() { pw.Close(); io.Copy(io.Discard, resp.Body); resp.Body.Close() }
		}, http.StatusOK, "HTTP/2.0"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closeWS := tt.open(t)
			// The echo has arrived, so the frames went through both ways.
			if out, in := live(); out < frameLen || in < frameLen {
				t.Errorf("live view while open: sent %d, received %d; want at least %d each", out, in, frameLen)
			}
			closeWS()
			waitFor(t, "the record", func() bool { return countLines(t, fx.records) == i+1 })
			f, _ := os.Open(fx.records)
			defer f.Close()
			sc := bufio.NewScanner(f)
			var rec wsRecord
			for sc.Scan() {
				if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
					t.Fatal(err)
				}
			}
			if rec.Status != tt.wantStatus || rec.Protocol != tt.wantProto || rec.BytesOut < frameLen || rec.BytesIn < frameLen {
				t.Errorf("record %+v, want status %d over %s and at least %d bytes each way", rec, tt.wantStatus, tt.wantProto, frameLen)
			}
		})
	}
}

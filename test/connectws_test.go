package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// TestWebsocketOverExtendedConnect opens a websocket with extended
// CONNECT over HTTP/2 (RFC 8441) and over HTTP/3 (RFC 9220), with a
// device certificate: the gateway carries it to the upstream's HTTP/1.1
// websocket endpoint, frames flow both ways, and when the device turns
// non-compliant the re-evaluator ends the stream.
func TestWebsocketOverExtendedConnect(t *testing.T) {
	e := newEnv(t)
	gw := e.start()
	tc := &tls.Config{RootCAs: poolFrom(t, e.serverCA), ServerName: "localhost",
		Certificates: []tls.Certificate{clientCert(t, e.dev1Cert, e.dev1Key)}}
	for _, proto := range []string{"HTTP/2", "HTTP/3"} {
		t.Run(proto, func(t *testing.T) {
			e.setCompliant(e.dev1ID, true)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, e.url("/ws"), pr)
			req.Header.Set("Sec-WebSocket-Version", "13")
			var rt http.RoundTripper
			if proto == "HTTP/2" {
				// x/net/http2's transport: net/http's refuses the
				// :protocol pseudo-header as a header name.
				tr := &http2.Transport{TLSClientConfig: tc}
				defer tr.CloseIdleConnections()
				req.Header.Set(":protocol", "websocket")
				rt = tr
			} else {
				tr := &http3.Transport{TLSClientConfig: tc}
				defer tr.Close()
				req.Proto = "websocket" // quic-go's way to set :protocol
				rt = tr
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("extended CONNECT: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("extended CONNECT: %d over %s: %s", resp.StatusCode, resp.Proto, b)
			}
			frames := make(chan []byte, 4)
			readErr := make(chan error, 1)
			go func() {
				for {
					p, err := readWSFrame(resp.Body)
					if err != nil {
						readErr <- err
						return
					}
					frames <- p
				}
			}()
			for _, msg := range []string{"hello", "over " + proto} {
				if _, err := pw.Write(maskedWSFrame([]byte(msg))); err != nil {
					t.Fatal(err)
				}
				select {
				case got := <-frames:
					if string(got) != "echo: "+msg {
						t.Fatalf("echo = %q, want %q", got, "echo: "+msg)
					}
				case err := <-readErr:
					t.Fatalf("reading the echo: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("no echo within 10 s")
				}
			}

			e.setCompliant(e.dev1ID, false)
			select {
			case <-readErr: // the stream ended
			case p := <-frames:
				t.Fatalf("unexpected frame %q after the device turned non-compliant", p)
			case <-time.After(5 * time.Second):
				t.Fatal("the websocket stayed open after the device turned non-compliant")
			}
			// Its record has the status the client got and the frames
			// counted both ways: two masked client frames of 5 and 11
			// bytes, two echoes of 11 and 17.
			rec := regexp.MustCompile(`"reason":"device.not_compliant","rule":"reevaluate:[^"]*","method":"CONNECT","host":"[^"]*","path":"/ws","protocol":"` +
				regexp.QuoteMeta(resp.Proto) + `","remote_ip":"[^"]*","status":(\d+),[^}]*"bytes_out":(\d+),"bytes_in":(\d+)`)
			var m []string
			for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				m = rec.FindStringSubmatch(gw.logs())
			}
			if m == nil || m[1] != "200" || m[2] != "32" || m[3] != "28" {
				t.Errorf("record status, bytes out and in = %q, want 200, 32 and 28:\n%s", m, gw.logs())
			}
		})
	}
}

// maskedWSFrame is a final text frame as a client sends it (RFC 6455
// §5.2: masked), for payloads under 126 bytes.
func maskedWSFrame(p []byte) []byte {
	mask := [4]byte{0x1f, 0x2e, 0x3d, 0x4c}
	f := append([]byte{0x81, 0x80 | byte(len(p))}, mask[:]...)
	for i, c := range p {
		f = append(f, c^mask[i%4])
	}
	return f
}

// readWSFrame reads one unmasked server frame with a payload under 126
// bytes and returns its payload.
func readWSFrame(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr[1]&0x80 != 0 || hdr[1]&0x7f >= 126 {
		return nil, io.ErrUnexpectedEOF
	}
	p := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return bytes.Clone(p), nil
}

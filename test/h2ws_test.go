package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestWebsocketOverHTTP2 opens a websocket over HTTP/2 with extended
// CONNECT (RFC 8441) and a device certificate: the gateway carries it to
// the upstream's HTTP/1.1 websocket endpoint, frames flow both ways, and
// when the device turns non-compliant the re-evaluator ends the stream.
func TestWebsocketOverHTTP2(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)

	// x/net/http2's transport: net/http's refuses the :protocol
	// pseudo-header as a header name before HTTP/2 sees it.
	tr := &http2.Transport{TLSClientConfig: &tls.Config{
		RootCAs: poolFrom(t, e.serverCA), Certificates: []tls.Certificate{clientCert(t, e.dev1Cert, e.dev1Key)}}}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, e.url("/ws"), pr)
	req.Header.Set(":protocol", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("extended CONNECT: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
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
	for _, msg := range []string{"hello", "over h2"} {
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
		t.Fatal("the HTTP/2 websocket stayed open after the device turned non-compliant")
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

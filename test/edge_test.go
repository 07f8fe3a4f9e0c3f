package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawRequest is a request written byte for byte, so that a test can send
// what Go's clients refuse or normalise: any Host or :authority, header
// names with underscores, a Connection header naming others, CONNECT.
type rawRequest struct {
	method    string
	authority string // Host over HTTP/1.1
	path      string // empty for CONNECT
	header    [][2]string
	sni       string // empty: connect by IP, without SNI
	cert      bool   // present dev1's device certificate
}

type rawResponse struct {
	status int
	header http.Header
	body   string
}

// upstreamEcho is what the e2e upstream answers: the request it got.
type upstreamEcho struct {
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
}

// echo parses the upstream's answer, failing when the request was not
// proxied.
func (r rawResponse) echo(t *testing.T) upstreamEcho {
	t.Helper()
	var e upstreamEcho
	if r.status != 200 || json.Unmarshal([]byte(r.body), &e) != nil || e.Path == "" {
		t.Fatalf("not proxied: %d %s", r.status, r.body)
	}
	return e
}

// reason is the problem document's reason code, "" for another body.
func (r rawResponse) reason() string {
	var p problem
	json.Unmarshal([]byte(r.body), &p)
	return p.Reason
}

func (e *env) rawTLS(rq rawRequest, proto string) *tls.Config {
	tc := &tls.Config{RootCAs: poolFrom(e.t, e.serverCA), ServerName: rq.sni, NextProtos: []string{proto}}
	if rq.sni == "" {
		tc.ServerName = "127.0.0.1" // verified against the IP SAN; no SNI is sent
	}
	if rq.cert {
		tc.Certificates = []tls.Certificate{clientCert(e.t, e.dev1Cert, e.dev1Key)}
	}
	return tc
}

// sendH1 writes rq as HTTP/1.1 bytes on a TLS connection.
func (e *env) sendH1(t *testing.T, rq rawRequest) rawResponse {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), e.rawTLS(rq, "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	target := rq.path
	if rq.method == http.MethodConnect {
		target = rq.authority
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", rq.method, target, rq.authority)
	conn1 := true
	for _, h := range rq.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
		conn1 = conn1 && !strings.EqualFold(h[0], "connection")
	}
	if conn1 {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: rq.method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawResponse{resp.StatusCode, resp.Header, string(body)}
}

// sendH2 writes rq as one HTTP/2 HEADERS frame, hpack-encoded as given.
func (e *env) sendH2(t *testing.T, rq rawRequest) rawResponse {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), e.rawTLS(rq, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: rq.method})
	if rq.method != http.MethodConnect {
		enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "https"})
		enc.WriteField(hpack.HeaderField{Name: ":path", Value: rq.path})
	}
	enc.WriteField(hpack.HeaderField{Name: ":authority", Value: rq.authority})
	for _, h := range rq.header {
		enc.WriteField(hpack.HeaderField{Name: strings.ToLower(h[0]), Value: h[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	resp := rawResponse{header: http.Header{}}
	var body bytes.Buffer
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					fmt.Sscan(hf.Value, &resp.status)
				} else {
					resp.header.Add(hf.Name, hf.Value)
				}
			}
			if f.StreamEnded() {
				return resp
			}
		case *http2.DataFrame:
			body.Write(f.Data())
			if f.StreamEnded() {
				resp.body = body.String()
				return resp
			}
		case *http2.RSTStreamFrame:
			resp.status, resp.body = -1, "RST_STREAM "+f.ErrCode.String()
			return resp
		case *http2.GoAwayFrame:
			resp.status, resp.body = -1, "GOAWAY "+f.ErrCode.String()
			return resp
		}
	}
}

// sendH3 writes rq as one HTTP/3 HEADERS frame, QPACK-encoded as given,
// on a request stream of a new QUIC connection.
func (e *env) sendH3(t *testing.T, rq rawRequest) rawResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, fmt.Sprintf("127.0.0.1:%d", e.port), e.rawTLS(rq, "h3"), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := qpack.NewEncoder(&hb)
	enc.WriteField(qpack.HeaderField{Name: ":method", Value: rq.method})
	if rq.method != http.MethodConnect {
		enc.WriteField(qpack.HeaderField{Name: ":scheme", Value: "https"})
		enc.WriteField(qpack.HeaderField{Name: ":path", Value: rq.path})
	}
	enc.WriteField(qpack.HeaderField{Name: ":authority", Value: rq.authority})
	for _, h := range rq.header {
		enc.WriteField(qpack.HeaderField{Name: strings.ToLower(h[0]), Value: h[1]})
	}
	frame := quicvarint.Append(nil, 0x1) // HEADERS
	frame = quicvarint.Append(frame, uint64(hb.Len()))
	frame = append(frame, hb.Bytes()...)
	if _, err := str.Write(frame); err != nil {
		t.Fatal(err)
	}
	str.Close() // the request ends: no body
	str.SetReadDeadline(time.Now().Add(15 * time.Second))
	r := quicvarint.NewReader(str)
	resp := rawResponse{header: http.Header{}}
	var body bytes.Buffer
	for {
		typ, err := quicvarint.Read(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *quic.StreamError
			if errors.As(err, &se) {
				resp.status, resp.body = -1, fmt.Sprintf("stream reset %#x", uint64(se.ErrorCode))
				return resp
			}
			t.Fatalf("reading the response: %v", err)
		}
		n, err := quicvarint.Read(r)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatal(err)
		}
		switch typ {
		case 0x1:
			next := qpack.NewDecoder().Decode(payload)
			for {
				hf, err := next()
				if err != nil {
					break
				}
				if hf.Name == ":status" {
					fmt.Sscan(hf.Value, &resp.status)
				} else {
					resp.header.Add(hf.Name, hf.Value)
				}
			}
		case 0x0:
			body.Write(payload)
		}
	}
	resp.body = body.String()
	return resp
}

type sender func(*testing.T, rawRequest) rawResponse

func (e *env) senders() []struct {
	name string
	send sender
} {
	return []struct {
		name string
		send sender
	}{{"HTTP/1.1", e.sendH1}, {"HTTP/2", e.sendH2}, {"HTTP/3", e.sendH3}}
}

// TestEdgeForgedIdentity: no spelling of an identity header reaches the
// upstream from a client, and a Connection header naming the gateway's
// own identity headers (HTTP/1.1 only: HTTP/2 and HTTP/3 have none) does
// not remove them.
func TestEdgeForgedIdentity(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.setCompliant(e.dev1ID, true)
	for _, s := range e.senders() {
		t.Run(s.name, func(t *testing.T) {
			h := [][2]string{{"X_Portcullis_User", "admin@corp"}, {"x-portcullis-groups", "admins"},
				{"X-PORTCULLIS-", "bare"}, {"X_Debug_User", "mallory"}, {"X-Portcullis-Assertion", "forged"}}
			if s.name == "HTTP/1.1" {
				h = append(h, [2]string{"Connection", "close, X-Portcullis-User, X-Portcullis-Assertion, X-Portcullis-Device-Id"})
			}
			got := s.send(t, rawRequest{method: "GET", authority: fmt.Sprintf("localhost:%d", e.port), path: "/hello",
				header: h, sni: "localhost", cert: true}).echo(t)
			if got.Headers["X-Portcullis-User"] != e.dev1User || got.Headers["X-Portcullis-Device-Id"] != e.dev1ID {
				t.Errorf("identity headers = %v, want user %s device %s", got.Headers, e.dev1User, e.dev1ID)
			}
			if a := got.Headers["X-Portcullis-Assertion"]; a == "" || a == "forged" {
				t.Errorf("assertion = %q, want the gateway's", a)
			}
			for k, v := range got.Headers {
				f := strings.ReplaceAll(strings.ToLower(k), "_", "-")
				if v == "admins" || v == "bare" || v == "mallory" || v == "admin@corp" || f == "x-debug-user" {
					t.Errorf("the client's %s: %s reached the upstream", k, v)
				}
			}
		})
	}
}

// TestEdgeHostAndPath: a Host or :authority that is not host[:port] is
// refused, a host in another case or with a trailing dot routes and
// forwards as the normal one, and paths servers read differently are
// refused.
func TestEdgeHostAndPath(t *testing.T) {
	e := newEnv(t)
	e.start()
	port := fmt.Sprint(e.port)
	for _, s := range e.senders() {
		t.Run(s.name, func(t *testing.T) {
			for _, auth := range []string{`localhost:1", for=6.6.6.6;host="localhost`, "localhost:" + port + ",evil.example",
				"localhost..:" + port, "localhost%2e:" + port, "localhost:99999"} {
				r := s.send(t, rawRequest{method: "GET", authority: auth, path: "/public/x", sni: "localhost"})
				// Go's HTTP/1.1 server refuses a Host with '"' or a space
				// itself, with a plain-text 400, and x/net's HTTP/2 server
				// (which the gateway runs for its reset-stream limit) such
				// an :authority with RST_STREAM PROTOCOL_ERROR.
				refusedBelow := strings.Contains(auth, `"`) && (s.name == "HTTP/1.1" && r.status == 400 ||
					s.name == "HTTP/2" && r.status == -1 && r.body == "RST_STREAM PROTOCOL_ERROR")
				if !refusedBelow && (r.status != 400 || r.reason() != "request.invalid_host") {
					t.Errorf("authority %q: %d %s, want 400 request.invalid_host", auth, r.status, r.body)
				}
			}
			got := s.send(t, rawRequest{method: "GET", authority: "LocalHost.:" + port, path: "/public/x", sni: "localhost"}).echo(t)
			if want := "localhost:" + port; got.Host != want || got.Headers["X-Forwarded-Host"] != want ||
				got.Headers["Forwarded"] != `for=127.0.0.1;host="`+want+`";proto=https` {
				t.Errorf("upstream got Host %q, X-Forwarded-Host %q, Forwarded %q; want %s", got.Host,
					got.Headers["X-Forwarded-Host"], got.Headers["Forwarded"], want)
			}
			for _, p := range []string{"/public/..%5cx", "/public;x", "/public/..;/x", "/public%00", "/public%2fx", "/%2570ublic"} {
				r := s.send(t, rawRequest{method: "GET", authority: "localhost:" + port, path: p, sni: "localhost"})
				if r.status != 400 || r.reason() != "request.invalid_path" {
					t.Errorf("path %q: %d %s, want 400 request.invalid_path", p, r.status, r.body)
				}
			}
			got = s.send(t, rawRequest{method: "GET", authority: "localhost:" + port, path: "/x/../public//y/./z?q=1", sni: "localhost"}).echo(t)
			if got.Path != "/public/y/z" {
				t.Errorf("upstream got path %q, want /public/y/z", got.Path)
			}
		})
	}
}

// TestEdgeMisdirected: with localhost requiring a device certificate in
// the handshake, a connection made without SNI (by IP, where the
// certificate is only optional) cannot carry requests for localhost: 421.
func TestEdgeMisdirected(t *testing.T) {
	e := newEnv(t)
	b, _ := os.ReadFile(e.cfgPath)
	s := strings.Replace(string(b), "    client_auth: optional\n", "    client_auth: optional\n    hosts: {localhost: required}\n", 1)
	os.WriteFile(e.cfgPath, []byte(s), 0o600)
	e.start()
	e.setCompliantVia("127.0.0.1", e.dev1ID, true)
	for _, sd := range e.senders() {
		t.Run(sd.name, func(t *testing.T) {
			r := sd.send(t, rawRequest{method: "GET", authority: fmt.Sprintf("localhost:%d", e.port), path: "/public/x"})
			if r.status != 421 || r.reason() != "request.misdirected" {
				t.Errorf("Host localhost on a connection without SNI: %d %s, want 421 request.misdirected", r.status, r.body)
			}
			// The connection localhost's handshake made, with its
			// certificate, reaches localhost.
			sd.send(t, rawRequest{method: "GET", authority: fmt.Sprintf("localhost:%d", e.port), path: "/public/x", sni: "localhost", cert: true}).echo(t)
			// And 127.0.0.1 by IP.
			sd.send(t, rawRequest{method: "GET", authority: fmt.Sprintf("127.0.0.1:%d", e.port), path: "/", cert: true}).echo(t)
		})
	}
}

// TestEdgeReservedUpgradeConnect: the gateway's own path space is never
// proxied, an Upgrade other than websocket never reaches the upstream,
// and a plain CONNECT is refused with 405.
func TestEdgeReservedUpgradeConnect(t *testing.T) {
	e := newEnv(t)
	e.start()
	auth := fmt.Sprintf("localhost:%d", e.port)
	for _, s := range e.senders() {
		t.Run(s.name, func(t *testing.T) {
			for _, p := range []string{"/.portcullis/feeds/uem/", "/.portcullis/nothing", "/.Portcullis/feeds/uem"} {
				r := s.send(t, rawRequest{method: "POST", authority: auth, path: p, sni: "localhost"})
				if r.status != 404 || r.reason() != "route.not_found" {
					t.Errorf("%s: %d %s, want 404 route.not_found from the gateway", p, r.status, r.body)
				}
			}
			r := s.send(t, rawRequest{method: "CONNECT", authority: auth, sni: "localhost"})
			if r.status != 405 || r.reason() != "request.method_not_allowed" || r.header.Get("Allow") == "" {
				t.Errorf("CONNECT: %d %v %s, want 405 with Allow", r.status, r.header, r.body)
			}
			if s.name != "HTTP/1.1" {
				return // Upgrade is an HTTP/1.1 mechanism; HTTP/2 and HTTP/3 servers refuse the header
			}
			got := s.send(t, rawRequest{method: "GET", authority: auth, path: "/public/x", sni: "localhost",
				header: [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "h2c"}, {"HTTP2-Settings", "AAMAAABkAAQAAP__"}}}).echo(t)
			if got.Headers["Upgrade"] != "" || got.Headers["Http2-Settings"] != "" {
				t.Errorf("upstream got Upgrade %q, HTTP2-Settings %q", got.Headers["Upgrade"], got.Headers["Http2-Settings"])
			}
		})
	}
}

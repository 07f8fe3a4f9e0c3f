package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// countBody makes the live entry count the request body bytes the
// upstream reads: a POST's body, or what a client sends on a websocket
// opened with extended CONNECT (HTTP/2, HTTP/3), whose body is the
// stream. A request without a body is left as it is, at no cost.
func countBody(r *http.Request, e *liveEntry) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = &countedBody{ReadCloser: r.Body, n: &e.bytesIn}
}

// countedBody counts the bytes read through it.
type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Hijack takes over the connection for an HTTP/1.1 protocol switch
// (ReverseProxy does so for a websocket once the upstream answered 101).
// The frames then bypass Write, so the connection it returns counts them
// both ways in the live entry, and the status is recorded as 101, which
// ReverseProxy writes to the connection itself. Without a hijackable
// writer underneath (HTTP/2, HTTP/3) it fails as ResponseController's
// Hijack does.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	if s.live == nil {
		return conn, brw, nil
	}
	return &countedConn{Conn: conn, in: &s.live.bytesIn, out: &s.live.bytesOut}, brw, nil
}

// countedConn counts the bytes read from and written to a hijacked
// client connection.
type countedConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the connection when the upstream has finished
// sending, as ReverseProxy does with the connection it hijacked (TLS and
// TCP connections both can); a connection that cannot reports so, and the
// proxy then ends the exchange.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

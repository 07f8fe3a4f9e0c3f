package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// HTTP/2 and HTTP/3 stream limits, and the rapid-reset defence
// (CVE-2023-44487).
//
// Go's HTTP/2 server already runs at most MaxConcurrentStreams handlers
// per connection and ends a connection (GOAWAY ENHANCE_YOUR_CALM) whose
// queue of handlers waiting to start grows past four times that. It does
// not count resets: a client that opens a stream and resets it at once,
// thousands of times, gets a handler, a decision and often an upstream
// request for each, and is never told to stop. The gateway counts the
// RST_STREAM frames each HTTP/2 client sends, and the HTTP/3 requests
// whose client cancelled them before they were answered; past
// limits.streams.max_resets within limits.streams.reset_window it ends
// the connection, as nginx and Envoy do.

// connContext is the TCP listeners' ConnContext: every connection gets
// its device-identity cache and its limits state.
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return withConnLimits(withConnInfo(ctx), nil)
}

// quicConnContext is the HTTP/3 listeners' ConnContext. Ending a QUIC
// connection for too many resets closes it with H3_EXCESSIVE_LOAD.
func quicConnContext(ctx context.Context, c *quic.Conn) context.Context {
	return withConnLimits(withConnInfo(ctx), func() {
		_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "too many reset streams")
	})
}

// configureHTTP2 serves srv's HTTP/2 connections with golang.org/x/net's
// server (the code net/http bundles), which lets the gateway read each
// connection's frames on their way in: it counts RST_STREAM frames and
// can end the connection with GOAWAY. The stream limit is
// limits.streams.max_concurrent.
func (g *Gateway) configureHTTP2(srv *http.Server, lim *LimitsConfig) error {
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: lim.Streams.MaxConcurrent}
	h2 := &http2.Server{
		CountError: func(errType string) {
			if errType == "too_many_early_resets" {
				g.limiter.rejections.WithLabelValues(ReasonRapidReset).Inc()
			}
		},
	}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	srv.TLSNextProto["h2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		ctx := context.Background()
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		rc := &resetCountingConn{Conn: c, scan: frameScanner{preface: len(http2.ClientPreface)}}
		cl := connLimitsFrom(ctx)
		if cl != nil {
			cl.end = rc.goAway
			rc.onReset = func() { g.streamReset(cl, c.RemoteAddr().String()) }
		}
		h2.ServeConn(rc, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
	}
	return nil
}

// h3Handler is the handler of the HTTP/3 listeners: the gateway, with
// every request the client cancelled before it was answered counted as a
// reset stream. QUIC hides the frames; a cancelled request shows as a
// done context (the client stopped reading: STOP_SENDING) or a body
// read that failed with the client's RESET_STREAM, whichever the handler
// sees first.
func (g *Gateway) h3Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body *resetWatchBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &resetWatchBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			if r.Context().Err() != nil || body != nil && body.reset.Load() {
				g.streamReset(connLimitsFrom(r.Context()), r.RemoteAddr)
			}
		}()
		g.ServeHTTP(w, r)
	})
}

// resetWatchBody is an HTTP/3 request body that notes whether the client
// reset the stream while it was read.
type resetWatchBody struct {
	io.ReadCloser
	reset atomic.Bool
}

func (b *resetWatchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var se *quic.StreamError
	if err != nil && errors.As(err, &se) && se.Remote {
		b.reset.Store(true)
	}
	return n, err
}

// resetCountingConn is an HTTP/2 connection as its server reads it: the
// frames pass through a scanner that counts the client's RST_STREAM
// frames, and once goAway is called, the next Read fails with a
// connection error that makes the server send GOAWAY ENHANCE_YOUR_CALM
// and close the connection.
//
// That the server answers a ConnectionError from its connection with that
// GOAWAY is how x/net/http2's server handles errors from the frame reader;
// TestRapidResetGoAway pins it. A server that did not would still close
// the connection, just without the GOAWAY.
type resetCountingConn struct {
	*tls.Conn // ConnectionState, for the server's TLS checks and r.TLS
	scan      frameScanner
	onReset   func()
	tripped   atomic.Bool
}

func (c *resetCountingConn) Read(p []byte) (int, error) {
	if c.tripped.Load() {
		return 0, http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	n, err := c.Conn.Read(p)
	if resets := c.scan.scan(p[:n]); resets > 0 && c.onReset != nil {
		for range resets {
			c.onReset()
		}
	}
	return n, err
}

// goAway ends the connection at its next read.
func (c *resetCountingConn) goAway() { c.tripped.Store(true) }

// frameScanner follows the byte stream a client sends on an HTTP/2
// connection (RFC 9113 §3.4, §4.1): the 24-byte preface, then frames of a
// 9-byte header and a payload of the length the header gives. It reads
// only the headers, and counts those of RST_STREAM frames. It never fails:
// a stream that is not HTTP/2 is the server's to refuse.
type frameScanner struct {
	preface int     // preface bytes still to pass
	hdr     [9]byte // the frame header being collected
	nhdr    int     // bytes of it collected
	skip    int     // payload bytes still to pass
}

// frameRSTStream is RST_STREAM's frame type (RFC 9113 §6.4).
const frameRSTStream = 0x3

// scan follows b and returns how many RST_STREAM frame headers it
// completed.
func (s *frameScanner) scan(b []byte) (resets int) {
	for len(b) > 0 {
		switch {
		case s.preface > 0:
			n := min(s.preface, len(b))
			s.preface -= n
			b = b[n:]
		case s.skip > 0:
			n := min(s.skip, len(b))
			s.skip -= n
			b = b[n:]
		default:
			n := copy(s.hdr[s.nhdr:], b)
			s.nhdr += n
			b = b[n:]
			if s.nhdr < len(s.hdr) {
				continue
			}
			s.nhdr = 0
			s.skip = int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
			if s.hdr[3] == frameRSTStream {
				resets++
			}
		}
	}
	return resets
}

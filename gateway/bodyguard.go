package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"portcullis/internal/deny"
)

// errBodyTimeout is what a guarded body's Read returns once the client
// has been too slow.
var errBodyTimeout = errors.New("gateway: request body arrived too slowly")

// deadliner sets the read deadline of a request's body: the connection's
// on HTTP/1.1, the stream's on HTTP/2 and HTTP/3. [http.ResponseController]
// is one.
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// bodyGuard is a request body going upstream, read under the body
// timeouts: each Read waits at most IdleTimeout for the client, and the
// time spent waiting in all Reads may exceed MinRateGrace only by one
// second per MinRate bytes received. Only time spent waiting for the
// client counts: while the upstream is slow to take the body, no deadline
// runs. This is Kestrel's MinRequestBodyDataRate with nginx's
// client_body_timeout.
//
// Read is called by one goroutine at a time (the transport's); timedOut
// may be read by any.
type bodyGuard struct {
	body      io.ReadCloser
	dl        deadliner
	now       func() time.Time
	idle      time.Duration
	grace     time.Duration
	rate      int64 // bytes per second
	remaining int64 // bytes still expected; -1 when unknown
	n         int64 // bytes read
	waited    time.Duration
	byIdle    bool // whether the idle timeout (not the rate) fired
	timedOut  atomic.Bool
}

func newBodyGuard(w http.ResponseWriter, body io.ReadCloser, length int64, c *BodyLimitsConfig) *bodyGuard {
	return &bodyGuard{body: body, dl: http.NewResponseController(w), now: time.Now,
		idle: c.IdleTimeout.Std(), grace: c.MinRateGrace.Std(), rate: c.MinRate, remaining: length}
}

// allowance is how long the next Read may wait for the client, and
// whether the idle timeout (rather than the rate) sets it.
func (b *bodyGuard) allowance() (time.Duration, bool) {
	// The time by which n+1 bytes must have come: the grace, plus one
	// second per rate bytes. Computed in float64 seconds, as (n+1)/rate
	// can exceed what a Duration holds for a huge n and a tiny rate.
	byRate := b.grace.Seconds() + float64(b.n+1)/float64(b.rate) - b.waited.Seconds()
	if byRate >= b.idle.Seconds() {
		return b.idle, true
	}
	return time.Duration(byRate * float64(time.Second)), false
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	if b.timedOut.Load() {
		return 0, errBodyTimeout
	}
	if b.remaining == 0 {
		// The whole declared body has been read; what is left is the
		// EOF, which needs no wait (and on HTTP/1.1 must not leave a
		// deadline for the server's background read to trip on).
		return b.body.Read(p)
	}
	allow, byIdle := b.allowance()
	if allow <= 0 {
		b.byIdle = byIdle
		b.timedOut.Store(true)
		_ = b.dl.SetReadDeadline(b.now()) // the stream or connection is done for
		return 0, errBodyTimeout
	}
	start := b.now()
	armed := b.dl.SetReadDeadline(start.Add(allow)) == nil
	n, err := b.body.Read(p)
	b.waited += b.now().Sub(start)
	b.n += int64(n)
	if b.remaining > 0 {
		b.remaining = max(b.remaining-int64(n), 0)
	}
	if err != nil && armed && isTimeout(err) {
		// The deadline stays in the past: whatever reads this body or
		// connection next fails at once, and the server closes it.
		b.byIdle = byIdle
		b.timedOut.Store(true)
		return n, errBodyTimeout
	}
	if armed {
		_ = b.dl.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *bodyGuard) Close() error { return b.body.Close() }

// rule names the key whose limit fired, for the decision record.
func (b *bodyGuard) rule() string {
	if b.byIdle {
		return "limits.body.idle_timeout"
	}
	return "limits.body.min_rate"
}

// writeBodyTimeout answers 408 for a request whose body came too slowly.
// An HTTP/1.1 connection is closed after it: its body is half read.
func writeBodyTimeout(w http.ResponseWriter, r *http.Request, resource string) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	deny.Write(w, r, deny.Info{Status: http.StatusRequestTimeout, Reason: ReasonBodyTimeout,
		Title: http.StatusText(http.StatusRequestTimeout), Detail: "The request body arrived too slowly.",
		RequestID: r.Header.Get(hdrRequestID), Resource: resource})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// minSystemBody is the body size read ahead for the gateway's own
// endpoints when no feed allows more; each handler applies its own,
// smaller limit to what it gets.
const minSystemBody = 1 << 20

// serveSystem runs one of the gateway's own handlers (feeds, login
// callbacks). Their bodies are small and come from servers or browsers,
// so the whole body must arrive within limits.body.system_timeout: the
// gateway reads it (up to the largest limit of any such handler, plus one
// byte so the handler sees an overflow and answers 413 itself) before
// the handler runs, and answers 408 if it does not come in time.
func (g *Gateway) serveSystem(w http.ResponseWriter, r *http.Request, s *snapshot, h http.Handler) {
	if r.Body == nil || r.Body == http.NoBody {
		h.ServeHTTP(w, r)
		return
	}
	limit := int64(minSystemBody)
	for _, f := range s.cfg.Posture.Feeds {
		limit = max(limit, f.MaxBody)
	}
	rc := http.NewResponseController(w)
	armed := rc.SetReadDeadline(time.Now().Add(s.cfg.Limits.Body.SystemTimeout.Std())) == nil
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, limit+1)))
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil && armed && isTimeout(err) {
		g.limiter.rejections.WithLabelValues(ReasonBodyTimeout).Inc()
		g.log.Debug("request body to a gateway endpoint arrived too slowly", "reason", ReasonBodyTimeout, "path", r.URL.Path)
		writeBodyTimeout(w, r, "")
		return
	}
	if armed {
		_ = rc.SetReadDeadline(time.Time{})
	}
	r.Body = &systemBody{Reader: bytes.NewReader(buf.Bytes()), err: err, orig: r.Body}
	h.ServeHTTP(w, r)
}

// systemBody is a body read ahead: its bytes, then the error the read
// ended with (io.EOF when it ended well).
type systemBody struct {
	*bytes.Reader
	err  error
	orig io.Closer
}

func (b *systemBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && b.err != nil {
		return n, b.err
	}
	return n, err
}

func (b *systemBody) Close() error { return b.orig.Close() }

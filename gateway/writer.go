package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"sync/atomic"
)

// statusWriter records the status of a proxied response, and counts the
// bytes sent in its live entry. It exposes the underlying writer through
// Unwrap, which is how http.ResponseController (and so ReverseProxy's
// flushing) reaches it; Hijack it implements itself, to count what a
// switched protocol sends (count.go).
type statusWriter struct {
	w      http.ResponseWriter
	status int
	live   *liveEntry // counts bytes both ways; may be nil
}

var statusWriterPool = sync.Pool{New: func() any { return new(statusWriter) }}

func (s *statusWriter) reset(w http.ResponseWriter) { *s = statusWriter{w: w} }

func (s *statusWriter) writer() http.ResponseWriter { return s }

func (s *statusWriter) Header() http.Header { return s.w.Header() }

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 || s.status < 200 {
		s.status = code
	}
	s.w.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.w.Write(b)
	if s.live != nil {
		s.live.bytesOut.Add(int64(n))
	}
	return n, err
}

// Flush lets ReverseProxy stream without going through ResponseController.
func (s *statusWriter) Flush() {
	_ = http.NewResponseController(s.w).Flush()
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.w }

// idGen makes request ids: a random per-process prefix and a counter, so
// ids are unique without a random read per request.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &idGen{prefix: hex.EncodeToString(b[:])}
}

// idLen is the length of a request id: a 12-digit prefix, '-', and 16
// hexadecimal digits of the counter.
const idLen = 12 + 1 + 16

func (g *idGen) next() (string, uint64) {
	var buf [idLen]byte
	seq := g.fill(&buf)
	return string(buf[:]), seq
}

// fill writes the next request id into buf and returns its sequence
// number.
func (g *idGen) fill(buf *[idLen]byte) uint64 {
	n := g.n.Add(1)
	seq := n
	copy(buf[:], g.prefix)
	buf[12] = '-'
	const digits = "0123456789abcdef"
	for i := idLen - 1; i > 12; i-- {
		buf[i] = digits[n&0xf]
		n >>= 4
	}
	return seq
}

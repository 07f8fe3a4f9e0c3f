package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Timing of the syslog sender.
const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second // a receiver this slow is treated as gone
	exitTimeout  = 3 * time.Second  // to deliver what is queued when Run ends
	retryMin     = 100 * time.Millisecond
	retryMax     = 30 * time.Second
)

// errPeerClosed means the receiver closed the connection.
var errPeerClosed = errors.New("receiver closed the connection")

// syslogSink ships messages to one receiver.
type syslogSink struct {
	addr    string
	tls     *tls.Config // nil for plain TCP
	header  header
	q       *queue
	logger  *slog.Logger
	metrics *metrics

	// exitBy is the deadline, in Unix nanoseconds, for writes once Run is
	// ending; zero while it runs.
	exitBy atomic.Int64
}

func newSyslogSink(c *SyslogConfig, hostname string, logger *slog.Logger, m *metrics) (*syslogSink, error) {
	s := &syslogSink{
		addr:    c.Address,
		q:       newQueue(cmpInt(c.Buffer, DefaultSyslogBuffer)),
		logger:  logger.With("sink", sinkSyslog, "address", c.Address),
		metrics: m,
	}
	app := c.AppName
	if app == "" {
		app = DefaultAppName
	}
	s.header = newHeader(hostname, app, os.Getpid())
	if c.Transport == transportTLS {
		host, _, _ := net.SplitHostPort(c.Address)
		s.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile.String())
			if err != nil {
				return nil, fmt.Errorf("audit: syslog.ca_file: %w", err)
			}
			s.tls.RootCAs = x509.NewCertPool()
			if !s.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("audit: syslog.ca_file: %s holds no PEM certificate", c.CAFile)
			}
		}
	}
	return s, nil
}

func cmpInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// run connects to the receiver and sends queued messages until ctx ends,
// reconnecting with exponential backoff and jitter while the receiver is
// down. Messages keep queuing meanwhile, and drop once the queue is full.
func (s *syslogSink) run(ctx context.Context) {
	s.exitBy.Store(0)
	stop := context.AfterFunc(ctx, func() { s.exitBy.Store(time.Now().Add(exitTimeout).UnixNano()) })
	defer stop()

	var out outbox
	retry := retryMin
	down := false // whether the outage has been logged
	for ctx.Err() == nil {
		conn, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.metrics.errors[idxSyslog].Inc()
			if !down {
				s.logger.Warn("audit syslog receiver unreachable; queuing", "err", err)
				down = true
			}
			wait := retry/2 + rand.N(retry/2+1)
			retry = min(retry*2, retryMax)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		if down {
			s.logger.Info("audit syslog receiver reachable again")
			down = false
		}
		retry = retryMin
		s.metrics.connected.Set(1)
		err = s.send(ctx, conn, &out)
		s.metrics.connected.Set(0)
		if err != nil {
			s.metrics.errors[idxSyslog].Inc()
			if ctx.Err() == nil {
				s.logger.Warn("audit syslog connection lost", "err", err)
				down = true
			}
		}
	}
	s.metrics.dropped[idxSyslog].Add(float64(out.n))
	s.discard()
}

// outbox holds frames taken from the queue and not yet written, which
// survive a lost connection to go out on the next one.
type outbox struct {
	buf   []byte // whole frames
	n     int    // frames in buf
	spare []byte
}

// discard drops whatever is queued, counting it.
func (s *syslogSink) discard() {
	_, n := s.q.take(nil)
	s.metrics.dropped[idxSyslog].Add(float64(n))
}

func (s *syslogSink) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if s.tls != nil {
		return (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, "tcp", s.addr)
	}
	return d.DialContext(ctx, "tcp", s.addr)
}

// send writes queued frames to conn until the connection fails or ctx
// ends; then it writes what is queued within exitTimeout. Frames the
// connection did not take stay in out for the next one; frames already
// in the kernel's buffers when a connection dies are lost.
func (s *syslogSink) send(ctx context.Context, conn net.Conn, out *outbox) error {
	// A receiver sends nothing, so a read returns only when it closes the
	// connection or it breaks: notice that before writing into the void.
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	defer func() {
		conn.Close()
		<-gone
	}()
	// Unblock a write stuck on a receiver that stopped reading once Run
	// is ending.
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now().Add(exitTimeout)) })
	defer stop()

	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		if out.n == 0 {
			if ctx.Err() == nil {
				select {
				case <-s.q.wake:
				case <-tick.C:
				case <-gone:
					return errPeerClosed
				case <-ctx.Done():
				}
			}
			out.buf, out.n = s.q.take(out.spare)
			out.spare = nil
			if out.n == 0 {
				if ctx.Err() != nil {
					return nil // everything sent
				}
				continue
			}
		}
		conn.SetWriteDeadline(s.deadline())
		w, err := conn.Write(out.buf)
		if err != nil {
			// Keep the frames not wholly written; a frame cut short is
			// sent again whole, as the receiver drops the fragment with
			// the connection.
			off, k := wholeFrames(out.buf, w)
			s.metrics.records[idxSyslog].Add(float64(k))
			out.buf = append(out.buf[:0], out.buf[off:]...)
			out.n -= k
			return err
		}
		s.metrics.records[idxSyslog].Add(float64(out.n))
		out.spare, out.buf, out.n = out.buf, nil, 0
	}
}

// wholeFrames returns the length and number of the octet-counted frames
// that lie entirely within the first w bytes of b.
func wholeFrames(b []byte, w int) (off, n int) {
	for off < w {
		sp := bytes.IndexByte(b[off:], ' ')
		if sp < 0 {
			break
		}
		size, err := strconv.Atoi(string(b[off : off+sp]))
		if err != nil || size < 0 {
			break // cannot happen: Write frames every message
		}
		end := off + sp + 1 + size
		if end > w {
			break
		}
		off, n = end, n+1
	}
	return off, n
}

// deadline returns the write deadline for the next write.
func (s *syslogSink) deadline() time.Time {
	if by := s.exitBy.Load(); by != 0 {
		return time.Unix(0, by)
	}
	return time.Now().Add(writeTimeout)
}

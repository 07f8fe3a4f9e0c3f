// Package audit writes the decision log: one JSON record per request or
// connection, to stdout, stderr or a file, and optionally to a SIEM as
// RFC 5424 syslog over TCP or TLS.
//
// Logging never makes a request wait on I/O. [Log.Write] encodes the
// record and appends it to a bounded in-memory queue per sink, which
// goroutines owned by [Log.Run] drain in batches; when a queue is full
// the record is dropped for that sink and counted in
// portcullis_audit_dropped_total{sink}. The schema is
// documented in docs/audit.md.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by [Log.Run] after [Log.Close].
var ErrClosed = errors.New("audit: log closed")

// ErrRunning is returned by a second call to [Log.Run].
var ErrRunning = errors.New("audit: Run called twice")

// Options are the dependencies of a [Log]; the zero value is usable.
type Options struct {
	// Logger receives the log's own troubles (a write error, the SIEM
	// going away); by default they are discarded.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means unregistered.
	Registerer prometheus.Registerer
	// Hostname is the syslog HOSTNAME; by default os.Hostname().
	Hostname string
	// Stdout and Stderr stand in for os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Now returns the current time; by default time.Now.
	Now func() time.Time
}

// Log is the decision log. Write is safe for concurrent use; records are
// written by Run.
type Log struct {
	logger  *slog.Logger
	now     func() time.Time
	out     io.Writer
	file    *os.File // non-nil when Output is a file we opened
	path    string   // the file's name, for Reopen
	reopen  chan chan error
	outQ    *queue
	syslog  *syslogSink // nil unless configured
	metrics *metrics

	closed atomic.Bool

	// subs is the current list of subscribers, replaced whole (under
	// subsMu) when one joins or leaves, so Write reads it without a lock.
	subs   atomic.Pointer[[]*subscriber]
	subsMu sync.Mutex

	// mu protects the fields below.
	mu     sync.Mutex
	ran    bool
	cancel context.CancelFunc // stops Run; nil until Run starts
	done   chan struct{}      // closed when Run returns
}

// New returns a Log for cfg, which must be valid. It opens the output
// file, if any, and reads the syslog CA file, but starts nothing and
// connects to nothing: call [Log.Run].
func New(cfg Config, opts Options) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	l := &Log{
		logger:  opts.Logger,
		now:     opts.Now,
		outQ:    newQueue(outputQueue),
		metrics: m,
		done:    make(chan struct{}),
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if cfg.Syslog != nil {
		hostname := opts.Hostname
		if hostname == "" {
			hostname, _ = os.Hostname()
		}
		if l.syslog, err = newSyslogSink(cfg.Syslog, hostname, l.logger, m); err != nil {
			return nil, err
		}
	}
	switch cfg.Output {
	case "", OutputStdout:
		l.out = cmp(opts.Stdout, io.Writer(os.Stdout))
	case OutputStderr:
		l.out = cmp(opts.Stderr, io.Writer(os.Stderr))
	default:
		f, err := os.OpenFile(string(cfg.Output), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: output: %w", err)
		}
		l.out, l.file, l.path = f, f, string(cfg.Output)
	}
	l.reopen = make(chan chan error)
	return l, nil
}

// cmp returns a unless it is nil, else b.
func cmp(a, b io.Writer) io.Writer {
	if a != nil {
		return a
	}
	return b
}

// bufPool holds encoding buffers, used only within Write.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooled keeps unusually large buffers out of the pool.
const maxPooled = 64 << 10

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooled {
		bufPool.Put(bp)
	}
}

// Write logs rec. It never blocks on I/O: the record is encoded and
// queued for each sink, or dropped and counted for a sink whose queue is
// full. Subscribers (see [Log.Subscribe]) get a copy, never waited for.
// rec is not retained.
func (l *Log) Write(rec *Record) {
	if l.closed.Load() {
		l.countClosed()
		return
	}
	now := l.now()
	bp := bufPool.Get().(*[]byte)
	line := appendRecord((*bp)[:0], rec, now)
	pri := priDeny
	if allowed(rec.Verdict) {
		pri = priAllow
	}
	t := rec.Time
	if t.IsZero() {
		t = now
	}
	l.queue(line, pri, t, "decision", rec.Reason, rec.Verdict)
	*bp = line
	putBuf(bp)
	if subs := l.subs.Load(); subs != nil {
		l.publish(*subs, rec)
	}
}

// countClosed counts a record written after Close as dropped by every sink.
func (l *Log) countClosed() {
	l.metrics.dropped[idxOutput].Inc()
	if l.syslog != nil {
		l.metrics.dropped[idxSyslog].Inc()
	}
}

// queue hands one encoded line (without its newline) to every sink; the
// syslog sink gets it as an RFC 5424 message with the other arguments in
// its header and structured data. line's buffer must have room to spare
// or be the caller's to grow.
func (l *Log) queue(line []byte, pri int, t time.Time, msgID, reason, verdict string) {
	if l.syslog != nil {
		sp := bufPool.Get().(*[]byte)
		msg := appendSyslogMsg((*sp)[:0], &l.syslog.header, pri, t, msgID, reason, verdict, line)
		// Octet counting (RFC 6587 §3.4.1): MSG-LEN SP SYSLOG-MSG.
		var prefix [24]byte
		p := append(strconv.AppendInt(prefix[:0], int64(len(msg)), 10), ' ')
		if !l.syslog.q.push(p, msg) {
			l.metrics.dropped[idxSyslog].Inc()
		}
		*sp = msg
		putBuf(sp)
	}
	if !l.outQ.push(line, newline) {
		l.metrics.dropped[idxOutput].Inc()
	}
}

var newline = []byte{'\n'}

// Run writes queued records until ctx ends or [Log.Close] is called, then
// writes what is still queued (giving the syslog receiver a few seconds)
// and returns. It may be called once.
func (l *Log) Run(ctx context.Context) error {
	l.mu.Lock()
	switch {
	case l.closed.Load():
		l.mu.Unlock()
		return ErrClosed
	case l.ran:
		l.mu.Unlock()
		return ErrRunning
	}
	l.ran = true
	ctx, l.cancel = context.WithCancel(ctx)
	l.mu.Unlock()
	defer close(l.done)

	var wg sync.WaitGroup
	if l.syslog != nil {
		wg.Go(func() { l.syslog.run(ctx) })
	}
	l.writeOutput(ctx)
	wg.Wait()
	return nil
}

// writeOutput writes queued lines to the output, a batch per write,
// until ctx ends; then it writes what is left.
func (l *Log) writeOutput(ctx context.Context) {
	var spare []byte
	failing := false // log a failing output once, not per batch
	flush := func() { spare = l.flushOutput(spare, &failing) }
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		select {
		case <-l.outQ.wake:
			flush()
		case <-tick.C:
			flush()
		case done := <-l.reopen:
			flush() // what was queued belongs to the old file
			done <- l.reopenFile()
		case <-ctx.Done():
			flush()
			return
		}
	}
}

// flushOutput writes what is queued to the output and counts it; spare is
// handed to the queue as its next buffer, and the written batch returned
// for reuse. *failing makes a failing output logged once, not per batch.
func (l *Log) flushOutput(spare []byte, failing *bool) []byte {
	b, n := l.outQ.take(spare)
	if n == 0 {
		return b
	}
	_, err := l.out.Write(b)
	switch {
	case err != nil:
		l.metrics.errors[idxOutput].Inc()
		l.metrics.dropped[idxOutput].Add(float64(n))
		if !*failing {
			l.logger.Error("audit output failing; dropping records", "err", err)
			*failing = true
		}
	case *failing:
		l.logger.Info("audit output recovered")
		*failing = false
		fallthrough
	default:
		l.metrics.records[idxOutput].Add(float64(n))
	}
	return b
}

// Reopen makes the writer close the output file and open it again by
// name, after flushing what is queued to the old one: after logrotate
// renames the file, new records go to a new file of the same name. It
// waits until that is done, and returns the error of opening the new
// file, in which case the old one stays in use. With stdout or stderr as
// output, or after Close, it does nothing.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	l.mu.Lock()
	if !l.ran {
		// No writer yet, and Run cannot start while we hold mu.
		defer l.mu.Unlock()
		if l.closed.Load() {
			return nil
		}
		var failing bool
		l.flushOutput(nil, &failing) // what was queued belongs to the old file
		return l.reopenFile()
	}
	done := l.done
	l.mu.Unlock()
	res := make(chan error, 1)
	select {
	case l.reopen <- res:
		return <-res
	case <-done:
		return nil
	}
}

// reopenFile runs on the writer goroutine, which alone uses l.out and
// l.file while Run is running (or under mu before Run starts).
func (l *Log) reopenFile() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		l.logger.Error("audit output: reopening failed; still writing to the old file", "path", l.path, "err", err)
		return fmt.Errorf("audit: reopening output: %w", err)
	}
	old := l.file
	l.out, l.file = f, f
	if err := old.Close(); err != nil {
		l.logger.Warn("audit output: closing the old file", "err", err)
	}
	l.logger.Info("audit output reopened", "path", l.path)
	return nil
}

// Close stops Run, waits until it has written what was queued, and
// closes the output file. Records written after Close are dropped and
// counted. If Run was never called, Close writes the queued records to
// the output itself; queued syslog messages are then dropped.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	ran, cancel := l.ran, l.cancel
	l.mu.Unlock()

	if ran {
		cancel()
		<-l.done
	} else {
		ctx, stop := context.WithCancel(context.Background())
		stop()
		l.writeOutput(ctx) // drains and flushes
		if l.syslog != nil {
			l.syslog.discard()
		}
	}
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			return fmt.Errorf("audit: output: %w", err)
		}
	}
	return nil
}

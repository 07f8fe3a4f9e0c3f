package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// End says how a tunnel ended. The values are stable: decision records
// carry them.
type End string

// How tunnels end.
const (
	EndClient      End = "tunnel.client_closed"      // the client closed or reset its side
	EndDestination End = "tunnel.destination_closed" // the destination closed the connection
	EndIdle        End = "tunnel.idle_timeout"       // nothing passed for timeouts.idle
	EndMax         End = "tunnel.max_duration"       // open for timeouts.max
	EndClosed      End = "tunnel.closed"             // the gateway closed it: re-evaluation, an operator, shutdown
	EndUnusable    End = "tunnel.unusable"           // the client's connection cannot carry a tunnel
)

// Options are what [Serve] needs beyond the request and the destination.
type Options struct {
	// Idle and Max are the tunnel's idle and absolute timeouts; zero is
	// none.
	Idle, Max time.Duration
	// BytesIn and BytesOut, if set, count the bytes as they pass: in is
	// client to destination, out is destination to client.
	BytesIn, BytesOut *atomic.Int64
	// OnOpen, if set, is called once the client has been told the tunnel
	// is open, before any byte passes.
	OnOpen func()
}

// Result is how a tunnel served by [Serve] ended.
type Result struct {
	End End
	// Reset is set when the client's stream must be reset rather than
	// ended: over HTTP/2 the caller's handler must then panic with
	// [http.ErrAbortHandler] (see [Result.Finish]) once it has recorded
	// the tunnel, since that is how Go's server sends RST_STREAM.
	Reset bool
	proto int
}

// Finish ends the handler as the result requires: over HTTP/2 a reset
// tunnel panics with [http.ErrAbortHandler], which the server answers
// with RST_STREAM. Call it last, after the decision record is written.
func (r Result) Finish() {
	if r.Reset && r.proto == 2 {
		panic(http.ErrAbortHandler)
	}
}

// bufSize is each direction's copy buffer. Two of them are most of an
// idle tunnel's memory.
const bufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// errIdle and errMax are the causes of a tunnel's context when a timeout
// ends it.
var (
	errIdle = errors.New("tunnel idle")
	errMax  = errors.New("tunnel open too long")
)

// Serve tells the client that the tunnel is open (HTTP/1.1: a 200 on the
// hijacked connection; HTTP/2: a 200 HEADERS frame; HTTP/3: a 200 on the
// stream, which Serve then takes over) and copies bytes both ways between
// it and up until either side ends, a timeout fires, or ctx is done
// (re-evaluation closed it). up is closed when Serve returns.
//
// A tunnel ended by ctx or a timeout is reset: HTTP/1.1 closes the
// connection, HTTP/3 resets the stream with H3_CONNECT_ERROR, HTTP/2
// resets it with RST_STREAM once the caller calls [Result.Finish].
func Serve(ctx context.Context, w http.ResponseWriter, r *http.Request, up net.Conn, opt Options) Result {
	defer up.Close()
	c, err := openClient(w, r)
	if err != nil {
		return Result{End: EndUnusable, Reset: true, proto: r.ProtoMajor}
	}
	if opt.OnOpen != nil {
		opt.OnOpen()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if opt.Max > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, opt.Max, errMax)
		defer stop()
	}
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	if opt.Idle > 0 {
		var t *time.Timer
		t = time.AfterFunc(opt.Idle, func() {
			if idle := time.Duration(time.Now().UnixNano() - last.Load()); idle < opt.Idle {
				t.Reset(opt.Idle - idle)
				return
			}
			cancel(errIdle)
		})
		defer t.Stop()
	}
	// Whatever ends the tunnel unblocks both copies: closing up ends the
	// read from the destination, abort or close ends the client's.
	stopped := context.AfterFunc(ctx, func() { up.Close() })
	defer stopped()

	// Client to destination. Its end closes the destination's write side
	// (a half-close, as TCP has), unless the client reset the stream.
	clientDone := make(chan error, 1)
	go func() {
		err := pump(up, c.r, opt.BytesIn, &last, nil)
		if err == nil {
			if cw, ok := up.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		} else {
			cancel(errClientGone)
		}
		clientDone <- err
	}()
	// Destination to client.
	upErr := pump(c.w, up, opt.BytesOut, &last, c.flush)

	res := Result{proto: r.ProtoMajor}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errIdle):
		res.End, res.Reset = EndIdle, true
	case errors.Is(cause, errMax):
		res.End, res.Reset = EndMax, true
	case errors.Is(cause, errClientGone):
		res.End, res.Reset = EndClient, true
	case cause != nil:
		res.End, res.Reset = EndClosed, true
	case upErr == nil:
		res.End = EndDestination
	default:
		// The write to the client failed: it is gone.
		res.End, res.Reset = EndClient, true
	}
	if res.Reset {
		c.abort()
	} else {
		c.closeWrite()
	}
	c.stopReading()
	<-clientDone
	return res
}

var errClientGone = errors.New("tunnel client gone")

// pump copies src to dst until src ends (nil) or a read or write fails.
func pump(dst io.Writer, src io.Reader, n *atomic.Int64, last *atomic.Int64, flush func() error) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := *bp
	for {
		k, err := src.Read(b)
		if k > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(b[:k]); werr != nil {
				return werr
			}
			if flush != nil {
				if ferr := flush(); ferr != nil {
					return ferr
				}
			}
			if n != nil {
				n.Add(int64(k))
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// clientSide is the client's end of a tunnel, however it is carried.
type clientSide struct {
	r           io.Reader
	w           io.Writer
	flush       func() error // nil: writes need none
	closeWrite  func()       // end the tunnel normally
	abort       func()       // reset it
	stopReading func()       // unblock a read of r, after closeWrite or abort
}

// openClient answers the CONNECT with 200 and returns the client's side.
func openClient(w http.ResponseWriter, r *http.Request) (*clientSide, error) {
	switch r.ProtoMajor {
	case 1:
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			conn.Close()
			return nil, err
		}
		var once sync.Once
		closeConn := func() { once.Do(func() { conn.Close() }) }
		return &clientSide{r: brw.Reader, w: conn, closeWrite: closeConn, abort: closeConn, stopReading: closeConn}, nil
	case 3:
		hs, ok := w.(http3.HTTPStreamer)
		if !ok {
			return nil, errors.New("no HTTP/3 stream")
		}
		w.WriteHeader(http.StatusOK)
		str, err := hs.HTTPStream()
		if err != nil {
			return nil, err
		}
		return &clientSide{r: str, w: str,
			closeWrite: func() { str.Close() },
			abort: func() {
				str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeConnectError))
				str.CancelRead(quic.StreamErrorCode(http3.ErrCodeConnectError))
			},
			stopReading: func() { str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError)) },
		}, nil
	default:
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return nil, err
		}
		body := r.Body
		return &clientSide{r: body, w: w, flush: rc.Flush,
			// The handler's return ends the stream, and a reset is the
			// caller's panic: see Result.Finish.
			closeWrite:  func() {},
			abort:       func() {},
			stopReading: func() { body.Close() },
		}, nil
	}
}

package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// message is a parsed RFC 5424 message.
type message struct {
	pri       int
	version   int
	timestamp time.Time
	hostname  string
	appName   string
	procID    string
	msgID     string
	sdID      string
	params    map[string]string
	msg       []byte
}

// readFrame reads one octet-counted frame (RFC 6587 §3.4.1).
func readFrame(r *bufio.Reader) ([]byte, error) {
	digits, err := r.ReadString(' ')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(digits[:len(digits)-1])
	if err != nil || n <= 0 || n > 1<<20 || digits[0] == '0' {
		return nil, fmt.Errorf("bad MSG-LEN %q", digits)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// parseMessage parses an RFC 5424 message with at most one SD-ELEMENT,
// strictly, as a careful receiver would.
func parseMessage(b []byte) (*message, error) {
	m := &message{params: map[string]string{}}
	if len(b) == 0 || b[0] != '<' {
		return nil, errors.New("no PRI")
	}
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 {
		return nil, errors.New("bad PRI")
	}
	var err error
	if m.pri, err = strconv.Atoi(string(b[1:end])); err != nil || m.pri > 191 {
		return nil, errors.New("bad PRI value")
	}
	fields := bytes.SplitN(b[end+1:], []byte(" "), 7)
	if len(fields) != 7 {
		return nil, errors.New("short header")
	}
	if m.version, err = strconv.Atoi(string(fields[0])); err != nil {
		return nil, errors.New("bad VERSION")
	}
	if m.timestamp, err = time.Parse(time.RFC3339Nano, string(fields[1])); err != nil {
		return nil, fmt.Errorf("bad TIMESTAMP: %w", err)
	}
	if frac := bytes.IndexByte(fields[1], '.'); frac >= 0 && bytes.IndexByte(fields[1], 'Z')-frac-1 > 6 {
		return nil, errors.New("TIME-SECFRAC longer than 6 digits")
	}
	for i, max := range []int{255, 48, 128, 32} {
		f := fields[2+i]
		if len(f) == 0 || len(f) > max || !printASCII(string(f)) {
			return nil, fmt.Errorf("bad header field %d %q", i, f)
		}
	}
	m.hostname, m.appName, m.procID, m.msgID = string(fields[2]), string(fields[3]), string(fields[4]), string(fields[5])
	rest := fields[6]
	if len(rest) == 0 || rest[0] != '[' {
		return nil, errors.New("no structured data")
	}
	rest = rest[1:]
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, errors.New("bad SD-ELEMENT")
	}
	m.sdID, rest = string(rest[:sp]), rest[sp:]
	for len(rest) > 0 && rest[0] == ' ' {
		eq := bytes.Index(rest, []byte(`="`))
		if eq < 0 {
			return nil, errors.New("bad SD-PARAM")
		}
		name := string(rest[1:eq])
		rest = rest[eq+2:]
		var v []byte
		for {
			if len(rest) == 0 {
				return nil, errors.New("unterminated PARAM-VALUE")
			}
			c := rest[0]
			rest = rest[1:]
			if c == '"' {
				break
			}
			if c == ']' {
				return nil, errors.New("unescaped ] in PARAM-VALUE")
			}
			if c == '\\' && len(rest) > 0 && (rest[0] == '"' || rest[0] == '\\' || rest[0] == ']') {
				c = rest[0]
				rest = rest[1:]
			}
			v = append(v, c)
		}
		m.params[name] = string(v)
	}
	if len(rest) < 2 || rest[0] != ']' || rest[1] != ' ' {
		return nil, errors.New("SD-ELEMENT not closed")
	}
	m.msg = rest[2:]
	return m, nil
}

// receiver is a syslog receiver on loopback.
type receiver struct {
	t    testing.TB
	ln   net.Listener
	msgs chan *message
	mode mode

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// mode is how a receiver treats what it gets.
type mode int

const (
	parse   mode = iota // parse every frame and pass it on
	stalled             // accept and never read
	discard             // read and throw away
)

func listenReceiver(t testing.TB, ln net.Listener, m mode) *receiver {
	r := &receiver{t: t, ln: ln, msgs: make(chan *message, 1000), mode: m}
	r.wg.Go(r.accept)
	t.Cleanup(r.Close)
	return r
}

func newReceiver(t testing.TB, m mode) *receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return listenReceiver(t, ln, m)
}

func (r *receiver) Addr() string { return r.ln.Addr().String() }

func (r *receiver) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		switch r.mode {
		case parse:
			r.wg.Go(func() { r.serve(c) })
		case discard:
			r.wg.Go(func() { io.Copy(io.Discard, c) })
		}
	}
}

func (r *receiver) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		frame, err := readFrame(br)
		if err != nil {
			return
		}
		m, err := parseMessage(frame)
		if err != nil {
			r.t.Errorf("receiver: %v in %q", err, frame)
			return
		}
		select {
		case r.msgs <- m:
		default: // the test stopped listening
		}
	}
}

// Close stops accepting and closes every connection.
func (r *receiver) Close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *receiver) next(t testing.TB) *message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no syslog message within 10s")
		return nil
	}
}

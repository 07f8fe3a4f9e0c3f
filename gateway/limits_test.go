package gateway

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"portcullis/internal/conf"
)

func TestLimitsConfig(t *testing.T) {
	var def LimitsConfig
	def.ApplyDefaults()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if def.Upstream.PerConnection != def.Streams.MaxConcurrent {
		t.Errorf("per_connection default = %d, want the stream limit %d", def.Upstream.PerConnection, def.Streams.MaxConcurrent)
	}
	tests := []struct {
		name string
		edit func(*LimitsConfig)
		key  string // the key the error names; "" for valid
	}{
		{"defaults", func(*LimitsConfig) {}, ""},
		{"idle below a second", func(c *LimitsConfig) { c.Body.IdleTimeout = conf.Duration(time.Millisecond) }, "body.idle_timeout"},
		{"negative rate", func(c *LimitsConfig) { c.Body.MinRate = -1 }, "body.min_rate"},
		{"negative grace", func(c *LimitsConfig) { c.Body.MinRateGrace = conf.Duration(-time.Second) }, "body.min_rate_grace"},
		{"system timeout", func(c *LimitsConfig) { c.Body.SystemTimeout = conf.Duration(time.Millisecond) }, "body.system_timeout"},
		{"streams zero", func(c *LimitsConfig) { c.Streams.MaxConcurrent = -5 }, "streams.max_concurrent"},
		{"streams huge", func(c *LimitsConfig) { c.Streams.MaxConcurrent = maxStreamsLimit + 1 }, "streams.max_concurrent"},
		{"resets", func(c *LimitsConfig) { c.Streams.MaxResets = -1 }, "streams.max_resets"},
		{"window", func(c *LimitsConfig) { c.Streams.ResetWindow = conf.Duration(time.Millisecond) }, "streams.reset_window"},
		{"per connection", func(c *LimitsConfig) { c.Upstream.PerConnection = -1 }, "upstream.per_connection"},
		{"per ip", func(c *LimitsConfig) { c.Upstream.PerIP = -1 }, "upstream.per_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := def
			tt.edit(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Key != tt.key {
				t.Errorf("Validate = %v, want an error about %s", err, tt.key)
			}
		})
	}
}

func TestParseLimitsConfig(t *testing.T) {
	_, err := ParseConfig("p.yaml", []byte(`
tls: {certificates: [{cert: s.pem, key: s.key}]}
resources: [{name: app, hosts: ["*"], upstream: "http://127.0.0.1:1", policy: {device: {certificate: "off"}}}]
limits:
  body: {min_rate: 0x10, idle_timeout: 500ms}
  streams: {max_conncurrent: 5}
`))
	var pe *conf.PosError
	if !errors.As(err, &pe) {
		t.Fatalf("ParseConfig = %v, want positioned errors", err)
	}
	for _, want := range []string{"limits.body.idle_timeout", "limits.streams.max_conncurrent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not name %s:\n%v", want, err)
		}
	}
}

// frames returns the client preface followed by one frame of each type
// in types, with payloads of the given lengths.
func frames(t testing.TB, types ...http2.FrameType) []byte {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	for i, typ := range types {
		id := uint32(2*i + 1)
		var err error
		switch typ {
		case http2.FrameRSTStream:
			err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
		case http2.FrameData:
			err = fr.WriteData(id, false, bytes.Repeat([]byte{'x'}, 300))
		case http2.FrameSettings:
			err = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		case http2.FramePing:
			err = fr.WritePing(false, [8]byte{byte(http2.FrameRSTStream)})
		default:
			err = fr.WriteRawFrame(typ, 0, id, []byte{byte(http2.FrameRSTStream), 0, 0, 0})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestFrameScanner(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		want  int
		split []int // read sizes, repeated; nil: all at once
	}{
		{"preface only", frames(t), 0, nil},
		{"one reset", frames(t, http2.FrameRSTStream), 1, nil},
		{"resets among others", frames(t, http2.FrameSettings, http2.FrameRSTStream, http2.FrameData, http2.FrameRSTStream, http2.FramePing), 2, nil},
		{"a byte at a time", frames(t, http2.FrameRSTStream, http2.FrameData, http2.FrameRSTStream), 2, []int{1}},
		{"header split", frames(t, http2.FrameData, http2.FrameRSTStream, http2.FrameRSTStream), 2, []int{7, 3, 11}},
		{"payload looks like a reset", frames(t, http2.FramePing, http2.FrameHeaders), 0, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := frameScanner{preface: len(http2.ClientPreface)}
			got := 0
			if tt.split == nil {
				got = s.scan(tt.in)
			}
			for b, i := tt.in, 0; tt.split != nil && len(b) > 0; i++ {
				n := min(tt.split[i%len(tt.split)], len(b))
				got += s.scan(b[:n])
				b = b[n:]
			}
			if got != tt.want {
				t.Errorf("resets = %d, want %d", got, tt.want)
			}
			if s.nhdr != 0 || s.skip != 0 || s.preface != 0 {
				t.Errorf("scanner not at a frame boundary after whole frames: %+v", s)
			}
		})
	}
}

// FuzzFrameScanner checks the scanner against x/net's framer: on any
// byte stream the framer reads to its end, the scanner counts exactly
// its RST_STREAM frames, however the stream is split into reads; on any
// other it never fails.
func FuzzFrameScanner(f *testing.F) {
	f.Add(frames(f, http2.FrameRSTStream, http2.FrameData)[len(http2.ClientPreface):], uint8(3))
	f.Add(frames(f, http2.FrameSettings, http2.FramePing, http2.FrameRSTStream)[len(http2.ClientPreface):], uint8(1))
	f.Add([]byte{0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 8}, uint8(9))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := frameScanner{}
		got := whole.scan(in)
		split := frameScanner{}
		n := 0
		for b := in; len(b) > 0; {
			k := min(int(step)+1, len(b))
			n += split.scan(b[:k])
			b = b[k:]
		}
		if n != got || split != whole {
			t.Fatalf("split reads counted %d (state %+v), one read %d (state %+v)", n, split, got, whole)
		}
		fr := http2.NewFramer(nil, bytes.NewReader(in))
		fr.AllowIllegalReads = true
		fr.SetMaxReadFrameSize(uint32(len(in))) // a longer frame is truncated anyway
		want := 0
		for {
			fh, err := fr.ReadFrameHeader()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return // not a whole stream of frames: nothing to compare
			}
			if _, err := fr.ReadFrameForHeader(fh); err != nil {
				var ce http2.ConnectionError
				var se http2.StreamError
				if !errors.As(err, &ce) && !errors.As(err, &se) {
					return // truncated, or too large to have been read
				}
			}
			if fh.Type == http2.FrameRSTStream {
				want++
			}
		}
		if got != want {
			t.Fatalf("scanner counted %d resets, the framer read %d", got, want)
		}
	})
}

// fakeClock is a body and a deadline under a simulated clock: each Read
// waits the next of waits, then returns a byte; a read whose wait passes
// the deadline returns a timeout at the deadline instead.
type fakeClock struct {
	now      time.Time
	deadline time.Time
	waits    []time.Duration
	reads    int
}

func (c *fakeClock) SetReadDeadline(t time.Time) error { c.deadline = t; return nil }

func (c *fakeClock) Read(p []byte) (int, error) {
	if c.reads == len(c.waits) {
		return 0, io.EOF
	}
	w := c.waits[c.reads]
	c.reads++
	if !c.deadline.IsZero() && c.now.Add(w).After(c.deadline) {
		c.now = c.deadline
		return 0, os.ErrDeadlineExceeded
	}
	c.now = c.now.Add(w)
	return 1, nil
}

func (c *fakeClock) Close() error { return nil }

func TestBodyGuard(t *testing.T) {
	const s = time.Second
	repeat := func(w time.Duration, n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = w
		}
		return d
	}
	tests := []struct {
		name      string
		waits     []time.Duration
		length    int64
		wantBytes int    // read before the verdict
		wantRule  string // "" when the body arrives
	}{
		{"fast", repeat(time.Millisecond, 100), -1, 100, ""},
		// 200 bytes at once earn 50 s of credit at 4 bytes/s: the idle
		// timeout (30 s) is what limits the next wait.
		{"idle", append(repeat(time.Millisecond, 200), 31*s), -1, 200, "limits.body.idle_timeout"},
		{"idle within bound", append(repeat(time.Millisecond, 100), 29*s), -1, 101, ""},
		// Nothing at all for longer than the grace.
		{"silent", []time.Duration{11 * s}, -1, 0, "limits.body.min_rate"},
		// A byte a second: the 14th byte is due by 10 s + 14/4 s = 13.5 s
		// of waiting, and 13 s have been spent on the first 13.
		{"trickle", repeat(s, 100), -1, 13, "limits.body.min_rate"},
		// A byte every 200 ms is above 4 bytes/s: never cut off.
		{"slow but fast enough", repeat(200*time.Millisecond, 200), 200, 200, ""},
		// The upstream's pauses between reads do not count: only waits.
		{"known length, then EOF", repeat(time.Millisecond, 5), 5, 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{now: time.Unix(1e9, 0), waits: tt.waits}
			b := &bodyGuard{body: c, dl: c, now: func() time.Time { return c.now },
				idle: 30 * s, grace: 10 * s, rate: 4, remaining: tt.length}
			n, err := io.Copy(io.Discard, b)
			if int(n) != tt.wantBytes {
				t.Errorf("read %d bytes, want %d", n, tt.wantBytes)
			}
			if tt.wantRule == "" {
				if err != nil || b.timedOut.Load() {
					t.Fatalf("Copy = %v, timed out %v; want the whole body", err, b.timedOut.Load())
				}
				if !c.deadline.IsZero() {
					t.Error("a deadline is left set after the body was read")
				}
				return
			}
			if !errors.Is(err, errBodyTimeout) || !b.timedOut.Load() || b.rule() != tt.wantRule {
				t.Fatalf("Copy = %v, rule %q; want errBodyTimeout by %s", err, b.rule(), tt.wantRule)
			}
			if _, err := b.Read(make([]byte, 1)); !errors.Is(err, errBodyTimeout) {
				t.Errorf("a read after the timeout = %v, want errBodyTimeout", err)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"not-an-ip", "not-an-ip"},
		{"fe80::1%eth0", "fe80::/64"},
	}
	for _, tt := range tests {
		if got := clientKey(tt.ip); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func TestCountReset(t *testing.T) {
	var cl connLimits
	t0 := time.Unix(1e9, 0)
	for i := range 3 {
		if cl.countReset(t0.Add(time.Duration(i)*time.Second), 3, 10*time.Second) {
			t.Fatalf("reset %d of 3 tripped", i+1)
		}
	}
	if !cl.countReset(t0.Add(5*time.Second), 3, 10*time.Second) {
		t.Error("a fourth reset within the window did not trip")
	}
	if cl.countReset(t0.Add(20*time.Second), 3, 10*time.Second) {
		t.Error("a reset in a new window tripped")
	}
}

func TestSystemBody(t *testing.T) {
	cut := errors.New("cut")
	b := &systemBody{Reader: bytes.NewReader([]byte("abc")), err: cut, orig: io.NopCloser(nil)}
	got, err := io.ReadAll(b)
	if string(got) != "abc" || !errors.Is(err, cut) {
		t.Errorf("ReadAll = %q, %v; want abc and the read's error", got, err)
	}
}

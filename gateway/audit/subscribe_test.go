package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSubscribe(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := New(Config{}, Options{Stdout: io.Discard, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.Write(&allowRec) // before any subscriber: nobody gets it
	a, stopA := l.Subscribe(4)
	b, stopB := l.Subscribe(1)
	l.Write(&denyRec)
	l.Write(&allowRec)

	if got := <-a; got.RequestID != denyRec.RequestID || got.Path != denyRec.Path {
		t.Errorf("first record to a = %+v, want the deny record", got)
	}
	if got := <-a; got.RequestID != allowRec.RequestID {
		t.Errorf("second record to a = %q, want %q", got.RequestID, allowRec.RequestID)
	}
	// b had room for one: the second was dropped and counted, and Write
	// did not wait for it.
	if got := <-b; got.RequestID != denyRec.RequestID {
		t.Errorf("record to b = %q, want %q", got.RequestID, denyRec.RequestID)
	}
	select {
	case got := <-b:
		t.Errorf("b got a record it had no room for: %q", got.RequestID)
	default:
	}
	if got := counter(t, reg, "portcullis_audit_dropped_total", sinkSubscriber); got != 1 {
		t.Errorf("dropped{sink=subscriber} = %v, want 1", got)
	}

	stopA()
	stopA() // idempotent
	l.Write(&denyRec)
	select {
	case got := <-a:
		t.Errorf("a got %q after unsubscribing", got.RequestID)
	default:
	}
	if got := <-b; got.RequestID != denyRec.RequestID {
		t.Errorf("b after a left = %q, want %q", got.RequestID, denyRec.RequestID)
	}
	stopB()
	if l.subs.Load() != nil {
		t.Error("subscriber list not empty after every subscriber left")
	}
}

// TestSubscribeConcurrent joins and leaves while records are written, for
// the race detector.
func TestSubscribeConcurrent(t *testing.T) {
	l, err := New(Config{}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				l.Write(&allowRec)
			}
		})
		wg.Go(func() {
			for range 50 {
				ch, stop := l.Subscribe(8)
				select {
				case <-ch:
				default:
				}
				stop()
			}
		})
	}
	wg.Wait()
}

func TestWriteAction(t *testing.T) {
	var out lockedBuffer
	l, err := New(Config{}, Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ch, stop := l.Subscribe(1)
	defer stop()
	l.WriteAction(&Action{Time: t0, Operator: "ops@example.com", IdP: "okta", Action: "revoke_device",
		Target: "corp/<script>", Reason: "stolen \"laptop\"", Result: "applied", RemoteIP: "192.0.2.1"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	line := bytes.TrimSpace(out.Bytes())
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	want := map[string]any{"time": "2026-11-23T12:00:00.123456789Z", "level": "WARN", "msg": "admin_action",
		"operator": "ops@example.com", "idp": "okta", "action": "revoke_device", "target": "corp/<script>",
		"reason": "stolen \"laptop\"", "result": "applied", "remote_ip": "192.0.2.1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	keys := keys(t, line)
	wantKeys := []string{"time", "level", "msg", "operator", "idp", "action", "target", "reason", "result", "remote_ip"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys = %v, want %v", keys, wantKeys)
	}
	select {
	case r := <-ch:
		t.Errorf("an admin action reached a decision subscriber: %+v", r)
	default:
	}
}

func TestWriteActionSyslog(t *testing.T) {
	rcv := newReceiver(t, parse)
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr()}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.WriteAction(&Action{Time: t0, Operator: "admin-token", IdP: "token", Action: "close_request", Target: "r1", Result: "closed"})
	m := rcv.next(t)
	if m.msgID != "admin_action" || m.params["reason"] != "close_request" || m.params["verdict"] != "closed" {
		t.Errorf("syslog message = msgid %q params %v", m.msgID, m.params)
	}
}

// lockedBuffer is a bytes.Buffer safe for the writer goroutine and the
// test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.b.Bytes())
}

func TestWriteAllocsWithSubscriber(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	l, err := New(Config{}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	ch, stop := l.Subscribe(1 << 16)
	defer stop()
	for range 100 {
		l.Write(&allowRec)
	}
	if got := testing.AllocsPerRun(1000, func() { l.Write(&allowRec) }); got > 0.1 {
		t.Errorf("Write with a subscriber allocates %.2f objects per record, want 0", got)
	}
	if len(ch) == 0 {
		t.Error("the subscriber got nothing")
	}
}

// BenchmarkWriteSubscriber measures what the admin console's decision
// stream adds to the request path: Write with no subscriber, and with one
// that keeps up (a reader drains it, as the console's hub does).
func BenchmarkWriteSubscriber(b *testing.B) {
	for _, subscribed := range []bool{false, true} {
		name := "none"
		if subscribed {
			name = "one"
		}
		b.Run(name, func(b *testing.B) {
			l, err := New(Config{}, Options{Stdout: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			start(b, l)
			if subscribed {
				ch, stop := l.Subscribe(8192)
				quit, done := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(done)
					for {
						select {
						case <-ch:
						case <-quit:
							return
						}
					}
				}()
				b.Cleanup(func() {
					stop()
					close(quit)
					<-done
				})
			}
			b.ReportAllocs()
			for b.Loop() {
				l.Write(&allowRec)
			}
		})
	}
}

func FuzzAppendAction(f *testing.F) {
	f.Add("ops@example.com", "corp/dev-1", "stolen")
	f.Add("\xff\x00\u2028\"\\", "</script>", "]\"")
	f.Fuzz(func(t *testing.T, operator, target, reason string) {
		a := Action{Operator: operator, Target: target, Reason: reason, Action: "revoke_device"}
		line := appendAction(nil, &a, t0)
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if got["msg"] != "admin_action" {
			t.Errorf("msg = %v", got["msg"])
		}
	})
}

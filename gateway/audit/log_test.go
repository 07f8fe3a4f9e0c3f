package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
)

// counter returns the value of a metric series from reg.
func counter(t testing.TB, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "sink" && lp.GetValue() == sink {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// start runs l until the test ends.
func start(t testing.TB, l *Log) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	t.Cleanup(func() {
		l.Close()
		// ErrClosed: the test closed l before Run began.
		if err := <-done; err != nil && err != ErrClosed {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestOutput(t *testing.T) {
	var out bytes.Buffer
	l, err := New(Config{}, Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	l.Write(&allowRec)
	l.Write(&denyRec)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := string(appendRecord(nil, &allowRec, t0)) + "\n" + string(appendRecord(nil, &denyRec, t0)) + "\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := l.Run(context.Background()); err != ErrRunning {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	l.Close()
	if err := l.Run(context.Background()); err != ErrClosed {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

func TestOutputStderr(t *testing.T) {
	var out, errOut bytes.Buffer
	l, err := New(Config{Output: "stderr"}, Options{Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(&allowRec)
	l.Close() // without Run: Close writes the queue itself
	if out.Len() != 0 || !strings.Contains(errOut.String(), `"verdict":"allow"`) {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestOutputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Output: Output(path)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.Write(&allowRec)
	l.Close()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "earlier\n" + string(appendRecord(nil, &allowRec, t0)) + "\n"; string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}

	if _, err := New(Config{Output: Output(filepath.Join(t.TempDir(), "missing", "audit.log"))}, Options{}); err == nil {
		t.Error("New with an output in a missing directory succeeded")
	}
}

// TestReopen: logrotate renames the file and sends SIGHUP; records queued
// before Reopen land in the renamed file, later ones in a new file of the
// old name, and none is lost or duplicated.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := New(Config{Output: Output(path)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil { // before Run: reopened in place
		t.Fatal(err)
	}
	start(t, l)
	rec := allowRec
	for i := range 100 {
		rec.RequestID = fmt.Sprintf("before-%d", i)
		l.Write(&rec)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		rec.RequestID = fmt.Sprintf("after-%d", i)
		l.Write(&rec)
	}
	l.Close()
	count := func(name, prefix string) (n, other int) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if strings.Contains(line, `"request_id":"`+prefix) {
				n++
			} else {
				other++
			}
		}
		return n, other
	}
	if n, other := count(path+".1", "before-"); n != 100 || other != 0 {
		t.Errorf("rotated file: %d records from before, %d others; want 100, 0", n, other)
	}
	if n, other := count(path, "after-"); n != 50 || other != 0 {
		t.Errorf("new file: %d records from after, %d others; want 50, 0", n, other)
	}

	// A file that cannot be reopened leaves the old one in use: records
	// keep being written to it, none dropped.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l2, err := New(Config{Output: Output(filepath.Join(sub, "audit.log"))}, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l2)
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := l2.Reopen(); err == nil {
		t.Error("Reopen into a removed directory succeeded")
	}
	l2.Write(&allowRec)
	l2.Close()
	if got := counter(t, reg, "portcullis_audit_records_total", sinkOutput); got != 1 {
		t.Errorf("records written after a failed reopen = %v, want 1", got)
	}
	if got := counter(t, reg, "portcullis_audit_dropped_total", sinkOutput); got != 0 {
		t.Errorf("records dropped after a failed reopen = %v, want 0", got)
	}
}

func TestWriteAfterClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := New(Config{}, Options{Stdout: io.Discard, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l.Write(&allowRec)
	if got := counter(t, reg, "portcullis_audit_dropped_total", sinkOutput); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	// A second Log on the same registry (a reload) shares the series.
	l2, err := New(Config{}, Options{Stdout: io.Discard, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	l2.Write(&allowRec)
	if got := counter(t, reg, "portcullis_audit_dropped_total", sinkOutput); got != 2 {
		t.Errorf("dropped after second Log = %v, want 2", got)
	}
}

func TestSyslogTCP(t *testing.T) {
	rcv := newReceiver(t, parse)
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr()}}, Options{Stdout: &out, Hostname: "gw 1.example.com", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)

	odd := denyRec
	odd.Reason = `we"ird]\reason`
	odd.Verdict = "login"
	tests := []struct {
		rec  *Record
		pri  int
		want map[string]string
	}{
		{&allowRec, 134, map[string]string{"reason": "allow", "verdict": "allow"}},
		{&denyRec, 132, map[string]string{"reason": "device.not_compliant", "verdict": "deny"}},
		{&odd, 132, map[string]string{"reason": `we"ird]\reason`, "verdict": "login"}},
	}
	for _, tt := range tests {
		l.Write(tt.rec)
	}
	for _, tt := range tests {
		m := rcv.next(t)
		if m.pri != tt.pri || m.version != 1 {
			t.Errorf("PRI %d VERSION %d, want %d 1", m.pri, m.version, tt.pri)
		}
		if !m.timestamp.Equal(tt.rec.Time.Truncate(time.Microsecond)) {
			t.Errorf("TIMESTAMP %v, want %v", m.timestamp, tt.rec.Time)
		}
		if m.hostname != "gw1.example.com" || m.appName != "portcullis" || m.procID != itoa(os.Getpid()) || m.msgID != "decision" {
			t.Errorf("header %q %q %q %q", m.hostname, m.appName, m.procID, m.msgID)
		}
		if m.sdID != "portcullis@32473" {
			t.Errorf("SD-ID %q", m.sdID)
		}
		for k, v := range tt.want {
			if m.params[k] != v {
				t.Errorf("SD %s = %q, want %q", k, m.params[k], v)
			}
		}
		if want := appendRecord(nil, tt.rec, t0); !bytes.Equal(m.msg, want) {
			t.Errorf("MSG:\n%s\nwant:\n%s", m.msg, want)
		}
	}
	l.Close()
	if got := counter(t, reg, "portcullis_audit_records_total", sinkSyslog); got != 3 {
		t.Errorf("syslog records = %v, want 3", got)
	}
	if got := strings.Count(out.String(), "\n"); got != 3 {
		t.Errorf("output has %d lines, want 3", got)
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func TestSyslogTLS(t *testing.T) {
	cert, caFile := testCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	rcv := listenReceiver(t, ln, parse)
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr(), Transport: "tls", CAFile: conf.Path(caFile), AppName: "pep"}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.Write(&denyRec)
	m := rcv.next(t)
	if m.appName != "pep" || m.params["reason"] != "device.not_compliant" {
		t.Errorf("got %q %v", m.appName, m.params)
	}
}

func TestSyslogTLSUntrusted(t *testing.T) {
	cert, _ := testCert(t)
	_, otherCA := testCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	rcv := listenReceiver(t, ln, parse)
	reg := prometheus.NewRegistry()
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr(), Transport: "tls", CAFile: conf.Path(otherCA)}}, Options{Stdout: io.Discard, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	// No Run: a failed handshake must not deliver. Dial directly.
	if c, err := l.syslog.dial(context.Background()); err == nil {
		c.Close()
		t.Fatal("dial succeeded against a receiver signed by an untrusted CA")
	}
	l.Close()
}

// testCert returns a self-signed certificate for 127.0.0.1 and the path
// of a PEM file holding it.
func testCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "syslog test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

func TestSyslogStalled(t *testing.T) {
	// A receiver that accepts but never reads: TCP buffers fill, the
	// sender blocks, the queue fills, and Write drops instead of waiting.
	rcv := newReceiver(t, stalled)
	reg := prometheus.NewRegistry()
	var out countingWriter
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr(), Buffer: 16}}, Options{Stdout: &out, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	rec := allowRec
	rec.Path = "/" + strings.Repeat("x", maxField-1)
	n := 0
	for ; n < 200_000; n++ {
		l.Write(&rec)
		if n%1000 == 0 && counter(t, reg, "portcullis_audit_dropped_total", sinkSyslog) > 0 {
			break
		}
	}
	if counter(t, reg, "portcullis_audit_dropped_total", sinkSyslog) == 0 {
		t.Fatalf("wrote %d records to a receiver that never reads, none dropped", n)
	}
	t.Logf("first syslog drop after about %d records", n)
	// Unblock the sender quickly so Close does not wait for the exit
	// timeout.
	rcv.Close()
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

func TestSyslogReconnect(t *testing.T) {
	rcv := newReceiver(t, parse)
	addr := rcv.Addr()
	l, err := New(Config{Syslog: &SyslogConfig{Address: addr}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.Write(&allowRec)
	rcv.next(t)

	// The SIEM goes away; records queue (or go into the dying
	// connection); it comes back on the same address.
	rcv.Close()
	l.Write(&denyRec)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	rcv2 := listenReceiver(t, ln, parse)

	// Records written around the restart may be lost with the old
	// connection; keep writing until the new receiver hears one.
	deadline := time.After(30 * time.Second)
	for {
		l.Write(&denyRec)
		select {
		case m := <-rcv2.msgs:
			if m.params["verdict"] != "deny" {
				t.Errorf("verdict = %q", m.params["verdict"])
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no message after the receiver restarted")
		}
	}
}

func TestCloseFlushesSyslog(t *testing.T) {
	rcv := newReceiver(t, parse)
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr()}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	l.Write(&allowRec) // wait for the connection
	rcv.next(t)
	for range 100 {
		l.Write(&denyRec)
	}
	l.Close()
	for range 100 {
		rcv.next(t)
	}
}

func TestFrameParse(t *testing.T) {
	msg := appendSyslog(nil, &header{"h", "a", "1"}, &denyRec, t0, []byte(`{"a":1}`))
	var frame []byte
	frame = append(frame, itoa(len(msg))...)
	frame = append(frame, ' ')
	frame = append(frame, msg...)
	got, err := readFrame(bufio.NewReader(bytes.NewReader(frame)))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("readFrame = %q, %v", got, err)
	}
	want := `<132>1 2026-11-23T12:00:01.123456Z h a 1 decision [portcullis@32473 reason="device.not_compliant" verdict="deny"] {"a":1}`
	if string(msg) != want {
		t.Errorf("message:\n%s\nwant:\n%s", msg, want)
	}
}

func TestHeaderField(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"gw.example.com", 255, "gw.example.com"},
		{"", 255, "-"},
		{"a b\tc\u00e9", 255, "abc"},
		{"abcdef", 3, "abc"},
		{"   ", 10, "-"},
	}
	for _, tt := range tests {
		if got := headerField(tt.in, tt.n); got != tt.want {
			t.Errorf("headerField(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestWriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	l, err := New(Config{}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, l)
	for range 100 {
		l.Write(&allowRec)
	}
	got := testing.AllocsPerRun(1000, func() { l.Write(&allowRec) })
	if got > 0.1 {
		t.Errorf("Write allocates %.2f objects per record, want 0", got)
	}
	sys, err := New(Config{Syslog: &SyslogConfig{Address: newReceiver(t, discard).Addr()}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	start(t, sys)
	sys.Write(&allowRec)
	if got := testing.AllocsPerRun(1000, func() { sys.Write(&allowRec) }); got > 0.1 {
		t.Errorf("Write with syslog allocates %.2f objects per record, want 0", got)
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, bm := range []struct {
		name   string
		syslog bool
	}{{"stdout", false}, {"stdout+syslog", true}} {
		b.Run(bm.name, func(b *testing.B) {
			var cfg Config
			if bm.syslog {
				cfg.Syslog = &SyslogConfig{Address: newReceiver(b, discard).Addr()}
			}
			reg := prometheus.NewRegistry()
			l, err := New(cfg, Options{Stdout: io.Discard, Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			start(b, l)
			b.ReportAllocs()
			for b.Loop() {
				l.Write(&allowRec)
			}
			b.ReportMetric(counter(b, reg, "portcullis_audit_dropped_total", sinkOutput)/float64(b.N), "out-drops/op")
			b.ReportMetric(counter(b, reg, "portcullis_audit_dropped_total", sinkSyslog)/float64(b.N), "syslog-drops/op")
		})
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendRecord(buf[:0], &allowRec, t0)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	rcv := newReceiver(t, parse)
	l, err := New(Config{Syslog: &SyslogConfig{Address: rcv.Addr()}}, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(context.Background()) })
	l.Write(&allowRec)
	rcv.next(t)
	l.Close()
	wg.Wait()
	rcv.Close()
	// A goroutine that has returned is still counted until the scheduler
	// reaps it (it shows in runtime.goexit1), which on a loaded machine
	// or under -race takes a while: wait, within a bound, for the count
	// to settle rather than sampling it once.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

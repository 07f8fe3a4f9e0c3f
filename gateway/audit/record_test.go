package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"portcullis/internal/conf"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	t0 = time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)

	allowRec = Record{
		Time:            t0,
		RequestID:       "01JD7Q6X3M8Z5N0R2T4V6W8Y9A",
		Resource:        "wiki",
		User:            "alice",
		Device:          "3f2a9c1e-0000-4000-8000-000000000001",
		DeviceCA:        "ivanti",
		Verdict:         "allow",
		Reason:          "allow",
		Rule:            "policy",
		Method:          "GET",
		Host:            "wiki.example.com",
		Path:            "/pages/home?x=1",
		Protocol:        "HTTP/2.0",
		RemoteIP:        "192.0.2.10",
		Status:          200,
		DecisionLatency: 1500 * time.Nanosecond,
		UpstreamLatency: 12 * time.Millisecond,
		Total:           13*time.Millisecond + 250*time.Microsecond,
		BytesOut:        5120,
		BytesIn:         2048,
	}
	denyRec = Record{
		Time:            t0.Add(time.Second),
		RequestID:       "01JD7Q6X3M8Z5N0R2T4V6W8Y9B",
		Resource:        "wiki",
		Device:          "3f2a9c1e-0000-4000-8000-000000000001",
		DeviceCA:        "ivanti",
		Verdict:         "deny",
		Reason:          "device.not_compliant",
		Rule:            "policy.device.compliant",
		Method:          "POST",
		Host:            "wiki.example.com",
		Path:            "/api/\"quoted\"\n\xff",
		Protocol:        "HTTP/1.1",
		RemoteIP:        "2001:db8::1",
		Status:          403,
		DecisionLatency: 900 * time.Nanosecond,
		Total:           time.Millisecond,
		BytesOut:        312,
	}
)

// schema is the documented key order of a record (docs/audit.md).
var schema = []string{
	"time", "level", "msg", "request_id", "resource", "user", "device", "device_ca",
	"verdict", "reason", "rule", "method", "host", "path", "protocol", "remote_ip",
	"status", "decision_seconds", "upstream_seconds", "total_seconds", "bytes_out",
	"bytes_in",
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// keys returns the keys of a JSON object in order.
func keys(t *testing.T, line []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(line))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	var ks []string
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		ks = append(ks, k.(string))
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	return ks
}

func TestRecordGolden(t *testing.T) {
	var out []byte
	for _, rec := range []*Record{&allowRec, &denyRec, {}} {
		line := appendRecord(nil, rec, t0)
		if got := keys(t, line); !slices.Equal(got, schema) {
			t.Errorf("keys = %v, want %v", got, schema)
		}
		out = append(append(out, line...), '\n')
	}
	golden(t, "records.jsonl", out)
}

func TestRecordValues(t *testing.T) {
	var got map[string]any
	if err := json.Unmarshal(appendRecord(nil, &denyRec, t0), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"time":             "2026-11-23T12:00:01.123456789Z",
		"level":            "WARN",
		"path":             "/api/\"quoted\"\n\ufffd",
		"status":           403.0,
		"decision_seconds": 0.0000009,
		"upstream_seconds": 0.0,
		"total_seconds":    0.001,
		"bytes_out":        312.0,
		"user":             "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestRecordTruncates(t *testing.T) {
	rec := Record{Path: "/" + strings.Repeat("é", 5000)}
	var got map[string]any
	if err := json.Unmarshal(appendRecord(nil, &rec, t0), &got); err != nil {
		t.Fatal(err)
	}
	p := got["path"].(string)
	if len(p) > maxField || !utf8.ValidString(p) || !strings.HasPrefix(rec.Path, p) {
		t.Errorf("path not cut cleanly to %d bytes: %d bytes", maxField, len(p))
	}
}

func FuzzAppendRecord(f *testing.F) {
	f.Add("/path", "device.not_compliant", "allow")
	f.Add("\xff\x00\u2028\"\\", "]\"", "")
	f.Fuzz(func(t *testing.T, path, reason, verdict string) {
		rec := Record{Path: path, Reason: reason, Verdict: verdict, Total: -time.Second}
		line := appendRecord(nil, &rec, t0)
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if utf8.ValidString(reason) && len(reason) <= maxField && got["reason"] != reason {
			t.Errorf("reason = %q, want %q", got["reason"], reason)
		}
		msg := appendSyslog(nil, &header{"h", "a", "1"}, &rec, t0, line)
		m, err := parseMessage(msg)
		if err != nil {
			t.Fatalf("unparsable syslog message %q: %v", msg, err)
		}
		if utf8.ValidString(reason) && len(reason) <= maxField && m.params["reason"] != reason {
			t.Errorf("SD reason = %q, want %q", m.params["reason"], reason)
		}
		if !bytes.Equal(m.msg, line) {
			t.Errorf("MSG = %q, want %q", m.msg, line)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		keys []string // keys of the expected errors
	}{
		{"empty", Config{}, nil},
		{"file", Config{Output: "/var/log/portcullis/audit.log"}, nil},
		{"syslog tcp", Config{Syslog: &SyslogConfig{Address: "siem.example.com:514"}}, nil},
		{"syslog tls", Config{Syslog: &SyslogConfig{Address: "[2001:db8::1]:6514", Transport: "tls", CAFile: "/etc/p/ca.pem", AppName: "pep", Buffer: 500}}, nil},
		{"no address", Config{Syslog: &SyslogConfig{}}, []string{"syslog.address"}},
		{"no port", Config{Syslog: &SyslogConfig{Address: "siem"}}, []string{"syslog.address"}},
		{"bad port", Config{Syslog: &SyslogConfig{Address: "siem:syslog"}}, []string{"syslog.address"}},
		{"port zero", Config{Syslog: &SyslogConfig{Address: "siem:0"}}, []string{"syslog.address"}},
		{"no host", Config{Syslog: &SyslogConfig{Address: ":514"}}, []string{"syslog.address"}},
		{"transport", Config{Syslog: &SyslogConfig{Address: "s:1", Transport: "udp"}}, []string{"syslog.transport"}},
		{"ca without tls", Config{Syslog: &SyslogConfig{Address: "s:1", CAFile: "ca.pem"}}, []string{"syslog.ca_file"}},
		{"app name space", Config{Syslog: &SyslogConfig{Address: "s:1", AppName: "my app"}}, []string{"syslog.app_name"}},
		{"app name long", Config{Syslog: &SyslogConfig{Address: "s:1", AppName: strings.Repeat("a", 49)}}, []string{"syslog.app_name"}},
		{"buffer negative", Config{Syslog: &SyslogConfig{Address: "s:1", Buffer: -1}}, []string{"syslog.buffer"}},
		{"buffer huge", Config{Syslog: &SyslogConfig{Address: "s:1", Buffer: 2_000_000}}, []string{"syslog.buffer"}},
		{"all at once", Config{Syslog: &SyslogConfig{Transport: "x", AppName: "a b", Buffer: -1}}, []string{"syslog.address", "syslog.transport", "syslog.app_name", "syslog.buffer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range conf.Flatten(tt.cfg.Validate()) {
				var fe *conf.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a FieldError", e)
				}
				got = append(got, fe.Key)
			}
			if !slices.Equal(got, tt.keys) {
				t.Errorf("error keys = %v, want %v", got, tt.keys)
			}
		})
	}
}

func TestConfigDecode(t *testing.T) {
	var c Config
	_, err := conf.Decode("/etc/p/audit.yaml", []byte("output: stderr\nsyslog:\n  address: siem:6514\n  transport: tls\n  ca_file: ca.pem\n  app_name: pep\n  buffer: 20\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	want := SyslogConfig{Address: "siem:6514", Transport: "tls", CAFile: "/etc/p/ca.pem", AppName: "pep", Buffer: 20}
	if c.Output != "stderr" || c.Syslog == nil || *c.Syslog != want {
		t.Errorf("decoded %+v %+v", c, c.Syslog)
	}
	// A file output is resolved against the configuration file.
	if _, err := conf.Decode("/etc/p/audit.yaml", []byte("output: decisions.log\n"), &c); err != nil || c.Output != "/etc/p/decisions.log" {
		t.Errorf("output = %q, err %v", c.Output, err)
	}
}

package audit

import (
	"strconv"
	"time"
	"unicode/utf8"

	"portcullis/internal/jsonx"
)

// Record is one access decision: what was asked, who asked, what was
// decided and why, and how long it took. Empty strings and zero numbers
// are written as such; the schema is fixed.
type Record struct {
	Time      time.Time // when the request arrived; zero means when Write was called
	RequestID string
	Resource  string
	User      string // user id; empty when no user was authenticated
	Device    string // device id; empty without a device certificate
	DeviceCA  string // the device CA's name
	Verdict   string // "allow", "deny", "login", "step_up", "remediate"
	Reason    string // the stable reason code
	Rule      string // the policy key that decided
	Method    string
	Host      string
	Path      string
	Protocol  string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	RemoteIP  string
	Status    int // the status sent to the client

	DecisionLatency time.Duration // gathering input and deciding
	UpstreamLatency time.Duration // until the upstream's response headers; zero if not proxied
	Total           time.Duration // from arrival to the last byte sent
	BytesOut        int64         // response body bytes sent to the client; for a websocket, its frames
	BytesIn         int64         // request body bytes read from the client; for a websocket, its frames

	// Tunnels only; records of other requests leave them empty, and empty
	// values are not written.
	Event       string // "tunnel_open" or "tunnel_end"
	Destination string // the address the tunnel dialed, ip:port
}

// maxField bounds each string field of a record, in bytes, so a huge URL
// cannot make a record too large for a syslog receiver. Longer values are
// cut at a character boundary.
const maxField = 2048

// allowed reports whether the verdict lets the request through; anything
// else, including an unknown verdict, is logged as a denial.
func allowed(verdict string) bool { return verdict == "allow" }

// appendRecord appends rec as one JSON object (without a newline) to b.
// The keys and their order are fixed; docs/audit.md describes them. It
// is hand-written so that logging a decision does not allocate. The
// "level" and "msg" keys make the line read like the gateway's other
// log/slog lines.
func appendRecord(b []byte, rec *Record, now time.Time) []byte {
	t := rec.Time
	if t.IsZero() {
		t = now
	}
	b = append(b, `{"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	if allowed(rec.Verdict) {
		b = append(b, `","level":"INFO","msg":"decision"`...)
	} else {
		b = append(b, `","level":"WARN","msg":"decision"`...)
	}
	b = appendField(b, "request_id", rec.RequestID)
	b = appendField(b, "resource", rec.Resource)
	b = appendField(b, "user", rec.User)
	b = appendField(b, "device", rec.Device)
	b = appendField(b, "device_ca", rec.DeviceCA)
	b = appendField(b, "verdict", rec.Verdict)
	b = appendField(b, "reason", rec.Reason)
	b = appendField(b, "rule", rec.Rule)
	b = appendField(b, "method", rec.Method)
	b = appendField(b, "host", rec.Host)
	b = appendField(b, "path", rec.Path)
	b = appendField(b, "protocol", rec.Protocol)
	b = appendField(b, "remote_ip", rec.RemoteIP)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = appendSeconds(b, "decision_seconds", rec.DecisionLatency)
	b = appendSeconds(b, "upstream_seconds", rec.UpstreamLatency)
	b = appendSeconds(b, "total_seconds", rec.Total)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, max(rec.BytesOut, 0), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, max(rec.BytesIn, 0), 10)
	if rec.Event != "" {
		b = appendField(b, "event", rec.Event)
	}
	if rec.Destination != "" {
		b = appendField(b, "destination", rec.Destination)
	}
	return append(b, '}')
}

func appendField(b []byte, key, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, truncate(value, maxField))
}

func appendSeconds(b []byte, key string, d time.Duration) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendFloat(b, max(d, 0).Seconds(), 'f', -1, 64)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// appendJSONString appends s as a JSON string (see [jsonx.Log]).
func appendJSONString(b []byte, s string) []byte { return jsonx.AppendString(b, s, jsonx.Log) }

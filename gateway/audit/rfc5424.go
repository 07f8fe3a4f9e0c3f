package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Syslog priorities: facility local0 (16), severity informational (6)
// for allowed requests and warning (4) for everything else.
const (
	priAllow = 16*8 + 6
	priDeny  = 16*8 + 4
)

// sdID is the structured-data element of every message. 32473 is the
// private enterprise number RFC 5612 reserves for documentation; it
// keeps the SD-ID syntactically valid without claiming a real one.
const sdID = "portcullis@32473"

// header holds the parts of an RFC 5424 header that do not change
// between messages, already sanitized.
type header struct {
	hostname string // PRINTUSASCII, at most 255, or "-"
	appName  string // at most 48
	procID   string // at most 128
}

func newHeader(hostname, appName string, pid int) header {
	return header{
		hostname: headerField(hostname, 255),
		appName:  headerField(appName, maxAppNameLen),
		procID:   headerField(strconv.Itoa(pid), 128),
	}
}

// headerField makes s a valid RFC 5424 header field: printable ASCII
// without spaces, at most n bytes, "-" (NILVALUE) if nothing is left.
func headerField(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// appendSyslog appends the RFC 5424 message for rec, whose JSON encoding
// is msg, to b: header, structured data with the reason and verdict, and
// the JSON as MSG. Framing is the sender's job.
func appendSyslog(b []byte, h *header, rec *Record, now time.Time, msg []byte) []byte {
	pri := priDeny
	if allowed(rec.Verdict) {
		pri = priAllow
	}
	t := rec.Time
	if t.IsZero() {
		t = now
	}
	return appendSyslogMsg(b, h, pri, t, "decision", rec.Reason, rec.Verdict, msg)
}

// appendSyslogMsg appends one RFC 5424 message with MSGID msgID, whose
// structured data carries reason and verdict, and whose MSG is msg.
func appendSyslogMsg(b []byte, h *header, pri int, t time.Time, msgID, reason, verdict string, msg []byte) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(pri), 10)
	b = append(b, ">1 "...)
	// TIME-SECFRAC allows at most six digits.
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, h.hostname...)
	b = append(b, ' ')
	b = append(b, h.appName...)
	b = append(b, ' ')
	b = append(b, h.procID...)
	b = append(b, ' ')
	b = append(b, msgID...)
	b = append(b, " ["...)
	b = append(b, sdID...)
	b = append(b, ` reason="`...)
	b = appendParamValue(b, truncate(reason, maxField))
	b = append(b, `" verdict="`...)
	b = appendParamValue(b, truncate(verdict, maxField))
	b = append(b, `"] `...)
	return append(b, msg...)
}

// appendParamValue appends s as an RFC 5424 PARAM-VALUE: '"', '\' and ']'
// are escaped with a backslash (§6.3.3), and invalid UTF-8 becomes
// U+FFFD since the value must be UTF-8.
func appendParamValue(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '"' || c == '\\' || c == ']' {
				b = append(b, '\\')
			}
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

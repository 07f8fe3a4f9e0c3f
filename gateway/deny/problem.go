package deny

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// appendProblem appends the RFC 9457 problem document for info to b. It
// is written by hand, not with encoding/json, because it runs for every
// denied API request and a fixed shape needs no reflection.
func appendProblem(b []byte, info *Info, status int) []byte {
	b = append(b, `{"type":"`...)
	if info.Reason == "" {
		b = append(b, "about:blank"...)
	} else {
		b = append(b, ProblemTypeBase...)
		b = appendPathSegment(b, info.Reason)
	}
	b = append(b, `","title":`...)
	title := info.Title
	if title == "" {
		title = http.StatusText(status)
	}
	b = appendJSONString(b, title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = appendMember(b, "detail", info.Detail)
	b = appendMember(b, "reason", info.Reason)
	b = appendMember(b, "request_id", info.RequestID)
	b = appendMember(b, "resource", info.Resource)
	b = appendMember(b, "remediation", info.Remediation)
	return append(b, "}\n"...)
}

// appendMember appends `,"key":"value"` unless value is empty.
func appendMember(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

const hex = "0123456789abcdef"

// appendPathSegment appends s percent-encoded as an RFC 3986 path segment
// of unreserved characters, so a reason code cannot break out of the URI.
// Reason codes are plain ("device.not_compliant") and pass unchanged.
func appendPathSegment(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&0xf])
	}
	return b
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; <, > and & are escaped so the body is inert even if some client
// sniffs it as HTML; U+2028 and U+2029 are escaped for JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

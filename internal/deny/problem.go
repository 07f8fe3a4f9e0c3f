package deny

import (
	"net/http"
	"strconv"

	"portcullis/internal/jsonx"
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

// appendJSONString appends s as a JSON string (see [jsonx.HTMLSafe]).
func appendJSONString(b []byte, s string) []byte { return jsonx.AppendString(b, s, jsonx.HTMLSafe) }

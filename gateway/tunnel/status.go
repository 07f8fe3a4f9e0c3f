package tunnel

import (
	"errors"
	"strings"
)

// ProxyName is how the gateway names itself in Proxy-Status.
const ProxyName = "portcullis"

// ProxyStatus is the part of an RFC 9209 Proxy-Status entry the gateway
// writes and the client reads: the proxy's name, the error type, and the
// details, which carry the stable reason code.
type ProxyStatus struct {
	Proxy   string
	Error   string // RFC 9209 §2.3 error type, e.g. "http_request_denied"
	Details string // the reason code, e.g. "device.not_compliant"
}

// String formats s as a Proxy-Status field value (an RFC 8941 list of
// one member with parameters).
func (s ProxyStatus) String() string {
	var b strings.Builder
	b.WriteString(s.Proxy)
	if s.Error != "" {
		b.WriteString("; error=")
		b.WriteString(s.Error)
	}
	if s.Details != "" {
		b.WriteString(`; details="`)
		for i := 0; i < len(s.Details); i++ {
			c := s.Details[i]
			if c < 0x20 || c > 0x7e {
				continue // not allowed in an sf-string
			}
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	return b.String()
}

var errProxyStatus = errors.New("malformed Proxy-Status")

// maxProxyStatus bounds what the client parses of a Proxy-Status value.
const maxProxyStatus = 4096

// ParseProxyStatus reads the last member of a Proxy-Status field value
// (RFC 9209 §2: each proxy appends its own, so the last is the one
// nearest the client) and its error and details parameters. It reads the
// subset of RFC 8941 that Proxy-Status uses: tokens and strings as
// members, parameters whose values are tokens, strings, integers or
// booleans; other parameters are skipped. Anything it cannot read is an
// error, never a panic.
func ParseProxyStatus(v string) (ProxyStatus, error) {
	if len(v) > maxProxyStatus {
		return ProxyStatus{}, errProxyStatus
	}
	p := sfParser{s: v}
	var last ProxyStatus
	for {
		p.skipSpace()
		var m ProxyStatus
		var ok bool
		if m.Proxy, ok = p.bareItem(); !ok || m.Proxy == "" {
			return ProxyStatus{}, errProxyStatus
		}
		for p.peek() == ';' {
			p.i++
			p.skipSpace()
			key, ok := p.key()
			if !ok {
				return ProxyStatus{}, errProxyStatus
			}
			val := "?1"
			if p.peek() == '=' {
				p.i++
				if val, ok = p.bareItem(); !ok {
					return ProxyStatus{}, errProxyStatus
				}
			}
			switch key {
			case "error":
				m.Error = val
			case "details":
				m.Details = val
			}
		}
		last = m
		p.skipSpace()
		if p.i == len(p.s) {
			return last, nil
		}
		if p.s[p.i] != ',' {
			return ProxyStatus{}, errProxyStatus
		}
		p.i++
	}
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key reads an RFC 8941 key: lcalpha or "*", then lcalpha, digits, "_",
// "-", "." or "*".
func (p *sfParser) key() (string, bool) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if 'a' <= c && c <= 'z' || c == '*' || p.i > start && ('0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], p.i > start
}

// bareItem reads a token, string, integer or boolean and returns its
// text (a string unescaped).
func (p *sfParser) bareItem() (string, bool) {
	switch c := p.peek(); {
	case c == '"':
		p.i++
		var b strings.Builder
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch {
			case c == '\\':
				if p.i == len(p.s) || p.s[p.i] != '"' && p.s[p.i] != '\\' {
					return "", false
				}
				b.WriteByte(p.s[p.i])
				p.i++
			case c == '"':
				return b.String(), true
			case c < 0x20 || c > 0x7e:
				return "", false
			default:
				b.WriteByte(c)
			}
		}
		return "", false
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return p.s[p.i-2 : p.i], true
		}
		return "", false
	case c == '-' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z' || c == '*':
		start := p.i
		p.i++
		for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
			p.i++
		}
		return p.s[start:p.i], true
	}
	return "", false
}

// isTokenChar reports whether c may continue an RFC 8941 token (tchar,
// ":" or "/").
func isTokenChar(c byte) bool {
	if 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}

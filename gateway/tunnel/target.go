package tunnel

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Target is the destination a CONNECT asks for: its request-target
// (HTTP/1.1) or :authority (HTTP/2, HTTP/3), parsed strictly.
type Target struct {
	// Name is the host name in lower case without a trailing dot, or ""
	// when the target is an IP literal.
	Name string
	// Addr is the IP literal, when the target is one.
	Addr netip.Addr
	Port uint16
}

// IsAddr reports whether the target names an address, not a host name.
func (t Target) IsAddr() bool { return t.Addr.IsValid() }

// String is the target in its normal form: "name:port", "1.2.3.4:port" or
// "[2001:db8::1]:port".
func (t Target) String() string {
	if t.IsAddr() {
		return netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	return t.Name + ":" + strconv.Itoa(int(t.Port))
}

// maxTargetLen bounds a CONNECT target: a 253-byte name, a colon and a
// port, with room for brackets.
const maxTargetLen = 262

// Errors of [ParseTarget]. The messages are safe to show a client.
var (
	ErrTargetSyntax = errors.New("the CONNECT target is not host:port")
	ErrTargetPort   = errors.New("the CONNECT target's port is not a number from 1 to 65535")
	ErrTargetHost   = errors.New("the CONNECT target's host is not a DNS name or an IP address")
)

// ParseTarget parses a CONNECT target, "host:port" (RFC 9110 §9.3.6):
// the port is required and decimal, from 1 to 65535; the host is a DNS
// name of letters, digits, hyphens and dots (a trailing dot is dropped),
// an IPv4 address in dotted-decimal, or an IPv6 address in brackets.
// Anything else is refused, so that what is checked against policy is
// what is dialed: no user info, no zone, no percent-encoding, no IPv4 in
// octal or hexadecimal, no IPv4-mapped IPv6 (it is read as the IPv4
// address it maps).
func ParseTarget(s string) (Target, error) {
	var t Target
	if len(s) == 0 || len(s) > maxTargetLen {
		return t, ErrTargetSyntax
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return t, ErrTargetSyntax
	}
	host, port := s[:i], s[i+1:]
	p, ok := parsePort(port)
	if !ok || p == 0 {
		return t, ErrTargetPort
	}
	t.Port = p
	if host[0] == '[' {
		if host[len(host)-1] != ']' {
			return t, ErrTargetSyntax
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return t, ErrTargetHost
		}
		t.Addr = a.Unmap()
		return t, nil
	}
	if strings.IndexByte(host, ':') >= 0 {
		return t, ErrTargetSyntax // an IPv6 address without brackets
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return t, ErrTargetHost
		}
		t.Addr = a
		return t, nil
	}
	name, ok := normalName(host)
	if !ok {
		return t, ErrTargetHost
	}
	t.Name = name
	return t, nil
}

// parsePort reads 1 to 5 decimal digits as a port.
func parsePort(s string) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// normalName checks a DNS host name (RFC 1123 labels: letters, digits
// and hyphens, not starting or ending with a hyphen, 1 to 63 bytes; 253
// bytes in all) and returns it in lower case without a trailing dot. A
// name whose last label is all digits is refused: it would be read as an
// IPv4 address in some form by some resolver ("127.1", "0x7f.1").
func normalName(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return "", false
	}
	lower := true
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			case 'A' <= c && c <= 'Z':
				lower = false
			case c == '-':
				if i == start {
					return "", false
				}
			default:
				return "", false
			}
			continue
		}
		label := s[start:i]
		if len(label) == 0 || len(label) > 63 || label[len(label)-1] == '-' {
			return "", false
		}
		start = i + 1
	}
	last := s[strings.LastIndexByte(s, '.')+1:]
	if allDigitsOrHex(last) {
		return "", false
	}
	if !lower {
		s = strings.ToLower(s)
	}
	return s, true
}

// allDigitsOrHex reports whether a label reads as a number: decimal, or
// hexadecimal with 0x.
func allDigitsOrHex(l string) bool {
	if len(l) > 2 && (l[:2] == "0x" || l[:2] == "0X") {
		l = l[2:]
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !('0' <= l[i] && l[i] <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isIPLiteral(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

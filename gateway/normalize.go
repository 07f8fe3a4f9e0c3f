package gateway

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"
)

// This file holds the one normalisation of a request's target: the host
// the router and the upstream see, and the path the router matches and
// the upstream receives. docs/requests.md states the rules; each refusal
// here has a reason code there.

// normalizeHost parses a Host header (or :authority) strictly as
// host[:port] and returns the host name the router matches (lower case,
// no trailing dot, IPv6 without brackets) and the authority the upstream
// receives in Host, X-Forwarded-Host and Forwarded (the same name, with
// the port as sent). A host is a DNS name of letter-digit-hyphen labels,
// an IPv4 address in dotted-decimal form, or a bracketed IPv6 address
// without a zone; a port is 1–65535 without leading zeros. Anything else
// is not a host, and ok is false.
//
// A host that is already normal (the common case) costs no allocation:
// name and authority are slices of h.
func normalizeHost(h string) (name, authority string, ok bool) {
	if h == "" || len(h) > 253+1+6 { // name, a trailing dot, ":65535"
		return "", "", false
	}
	if h[0] == '[' {
		return normalizeIPv6Host(h)
	}
	hostPart, port := h, ""
	if i := strings.IndexByte(h, ':'); i >= 0 {
		hostPart, port = h[:i], h[i+1:]
		if !validPort(port) {
			return "", "", false
		}
	}
	name = strings.TrimSuffix(hostPart, ".")
	upper, ok := validDNSName(name)
	if !ok {
		return "", "", false
	}
	if upper {
		name = strings.ToLower(name) // rare: clients send lower case
	}
	if name == hostPart {
		return name, h, true
	}
	if port == "" {
		return name, name, true
	}
	return name, name + ":" + port, true
}

// normalizeIPv6Host is normalizeHost for "[v6]" and "[v6]:port". The
// address is written in its canonical form (RFC 5952), so that
// "[::0001]" and "[::1]" route and forward alike.
func normalizeIPv6Host(h string) (name, authority string, ok bool) {
	end := strings.IndexByte(h, ']')
	if end < 0 {
		return "", "", false
	}
	rest := h[end+1:]
	if rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
		return "", "", false
	}
	lit := h[1:end]
	a, err := netip.ParseAddr(lit)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return "", "", false
	}
	if c := a.String(); c != lit {
		return c, "[" + c + "]" + rest, true
	}
	return lit, h, true
}

// validPort reports whether p is a decimal port, 1–65535, without a
// leading zero.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// validDNSName reports whether name is a DNS name of letter-digit-hyphen
// labels (RFC 1123: 1–63 characters each, no hyphen at either end, 253 in
// all) or a dotted-decimal IPv4 address, and whether it has upper-case
// letters. A name whose last label is numeric must be an IPv4 address:
// "1.2.3", "0x7f.1" or "127.1" are read as addresses by some resolvers and
// URL parsers, and as names by others.
func validDNSName(name string) (upper, ok bool) {
	if name == "" || len(name) > 253 {
		return false, false
	}
	start := 0
	numeric := true // the current label is all digits
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			label := name[start:i]
			if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
				return false, false
			}
			if i == len(name) && (numeric || len(label) > 1 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
				a, err := netip.ParseAddr(name)
				return false, err == nil && a.Is4()
			}
			start, numeric = i+1, true
			continue
		}
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', c == '-':
			numeric = false
		case 'A' <= c && c <= 'Z':
			upper, numeric = true, false
		case '0' <= c && c <= '9':
		default:
			return false, false
		}
	}
	return upper, true
}

// pathError says why a path was refused. Detail is shown to the client:
// it names the rule, never echoes the path.
type pathError struct{ detail string }

var (
	errPathNotAbsolute  = &pathError{"The request path must start with a slash."}
	errPathControl      = &pathError{"The request path contains a NUL or control character."}
	errPathBackslash    = &pathError{"The request path contains a backslash, which some servers read as a slash."}
	errPathEncodedSep   = &pathError{"The request path contains an encoded slash, backslash or dot (%2F, %5C, %2E)."}
	errPathDoubleEncode = &pathError{"The request path is encoded twice (%25 followed by an escape)."}
	errPathUTF8         = &pathError{"The request path does not decode to UTF-8 (overlong forms such as %C0%AF are read as a slash by some servers)."}
	errPathSemicolon    = &pathError{"The request path contains a semicolon, which some servers read as a segment parameter."}
	errPathAmbiguous    = &pathError{"A path segment ends in a dot or a space, which some servers drop, and the path would then reach another resource."}
)

// normalizePath checks the path of u and returns it as the gateway routes
// and forwards it: decoded, with "." and ".." segments resolved and empty
// segments removed. The caller forwards exactly this path, re-encoded
// canonically (RawPath cleared), so the upstream decodes what the router
// matched. It refuses, instead of normalising, the forms that servers
// disagree about: control bytes (NUL included), backslashes, encoded
// slashes, backslashes and dots, double encoding, invalid UTF-8 (old IIS
// read the overlong %C0%AF as '/'), and ';' (segment parameters to Tomcat
// and Spring). trailing reports a segment ending in
// '.' or ' ', which IIS and Windows file systems drop: the caller routes
// such a path twice (see [trimSegments]).
//
// A path that is already normal costs no allocation.
func normalizePath(u *url.URL) (p string, trailing bool, err *pathError) {
	p = u.Path
	if p == "" {
		return "/", false, nil // "GET http://host HTTP/1.1": the root
	}
	if p[0] != '/' {
		return "", false, errPathNotAbsolute
	}
	if raw := u.RawPath; raw != "" {
		// Escapes the decoded path no longer shows: %2F and %5C become
		// separators, %2E a dot that path cleaning would act on.
		for i := 0; i+2 < len(raw); i++ {
			if raw[i] != '%' {
				continue
			}
			switch raw[i+1] {
			case '2':
				if raw[i+2] == 'f' || raw[i+2] == 'F' || raw[i+2] == 'e' || raw[i+2] == 'E' {
					return "", false, errPathEncodedSep
				}
			case '5':
				if raw[i+2] == 'c' || raw[i+2] == 'C' {
					return "", false, errPathEncodedSep
				}
			}
		}
	}
	dirty, high := false, false
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			switch c := p[i]; {
			case c < 0x20 || c == 0x7f:
				return "", false, errPathControl
			case c == '\\':
				return "", false, errPathBackslash
			case c == ';':
				return "", false, errPathSemicolon
			case c >= 0x80:
				high = true
			case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
				// A '%' left after decoding was sent as %25: an upstream
				// that decodes again sees another path.
				return "", false, errPathDoubleEncode
			}
			continue
		}
		switch seg := p[segStart:i]; {
		case seg == "" && i < len(p), seg == ".", seg == "..":
			dirty = true
		case seg != "" && (seg[len(seg)-1] == '.' || seg[len(seg)-1] == ' '):
			if strings.Trim(seg, ". ") == "" {
				// "...", ". ": only dots and spaces, read as "." or ".."
				// by some servers and as a name by others.
				return "", false, errPathAmbiguous
			}
			trailing = true
		}
		segStart = i + 1
	}
	if high && !utf8.ValidString(p) {
		return "", false, errPathUTF8
	}
	if dirty {
		p = cleanPath(p)
	}
	return p, trailing, nil
}

// cleanPath resolves "." and ".." segments and removes empty ones,
// keeping a trailing slash.
func cleanPath(p string) string {
	trailing := strings.HasSuffix(p, "/")
	c := path.Clean("/" + p)
	if trailing && c != "/" {
		c += "/"
	}
	return c
}

// trimSegments is p as a server that drops trailing dots and spaces from
// each segment reads it (IIS, and any upstream on a Windows file system).
func trimSegments(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = strings.TrimRight(s, ". ")
	}
	return cleanPath(strings.Join(segs, "/"))
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

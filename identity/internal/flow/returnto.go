package flow

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ErrReturn wraps every refusal of [Returns.Check].
var ErrReturn = errors.New("return URL not allowed")

// maxReturn bounds a return URL.
const maxReturn = 4096

// Returns is the return-URL rule of one identity provider: where a
// browser may be sent once a login, a handoff or a logout is over. It is
// safe for concurrent use.
//
// A return URL is accepted when it is a path ("/x?y", resolved against a
// base the caller names) or an absolute URL, and, once resolved:
//   - its scheme is https (http only when the gateway serves http),
//   - it has no user info,
//   - its host is a DNS name or IP literal on the allow-list,
//   - its port is the scheme's default, a port named in the allow-list,
//     or one the gateway serves,
//   - it has no control character, space, backslash or non-ASCII byte,
//     raw or (in the path) percent-encoded, and its path does not start
//     with an encoded second slash.
//
// The redirect is then built from these parts ([Target.String]): always
// absolute, so no path can be read by a browser as another host.
type Returns struct {
	hosts  HostList
	ports  map[int]bool
	served func(port int) bool
	http   bool
}

// NewReturns returns the rule for hosts (patterns, see [HostList]; a
// port in a pattern is allowed on every host). served reports the ports
// the gateway listens on (nil: none but the default and the patterns'
// ones). allowHTTP accepts http URLs, for a gateway that serves http.
func NewReturns(hosts []string, served func(port int) bool, allowHTTP bool) *Returns {
	p := &Returns{hosts: HostList(hosts), ports: map[int]bool{}, served: served, http: allowHTTP}
	for _, h := range hosts {
		if _, port := splitHostPort(h); port != "" {
			if n, err := strconv.Atoi(port); err == nil {
				p.ports[n] = true
			}
		}
	}
	return p
}

// Hosts returns the allow-list.
func (p *Returns) Hosts() HostList { return p.hosts }

// Check validates raw and returns where to send the browser. A path is
// resolved against base (scheme and host only). Every refusal wraps
// [ErrReturn]; the error text never repeats raw, which may carry tokens.
func (p *Returns) Check(raw string, base *url.URL) (*Target, error) {
	if raw == "" || len(raw) > maxReturn {
		return nil, fmt.Errorf("%w: empty or longer than %d bytes", ErrReturn, maxReturn)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return nil, fmt.Errorf("%w: control character, space, backslash or non-ASCII byte at %d", ErrReturn, i)
		}
	}
	var u *url.URL
	if raw[0] == '/' {
		if len(raw) > 1 && raw[1] == '/' {
			return nil, fmt.Errorf("%w: scheme-relative URL", ErrReturn)
		}
		rel, err := url.Parse(raw)
		if err != nil || base == nil {
			return nil, fmt.Errorf("%w: not a path", ErrReturn)
		}
		u = &url.URL{Scheme: base.Scheme, Host: base.Host, Path: rel.Path, RawPath: rel.RawPath, RawQuery: rel.RawQuery}
	} else {
		var err error
		if u, err = url.Parse(raw); err != nil {
			return nil, fmt.Errorf("%w: not a URL", ErrReturn)
		}
		if u.Opaque != "" || u.Host == "" {
			return nil, fmt.Errorf("%w: not an absolute URL with a host", ErrReturn)
		}
		if u.User != nil {
			return nil, fmt.Errorf("%w: user info", ErrReturn)
		}
	}
	t := &Target{scheme: strings.ToLower(u.Scheme), query: u.RawQuery}
	switch {
	case t.scheme == "https":
	case t.scheme == "http" && p.http:
	default:
		return nil, fmt.Errorf("%w: scheme %q", ErrReturn, truncate(t.scheme, 16))
	}
	host, err := p.checkHost(u.Host, t.scheme)
	if err != nil {
		return nil, err
	}
	t.host = host
	if t.path, err = cleanPath(u.EscapedPath()); err != nil {
		return nil, err
	}
	return t, nil
}

// checkHost validates host[:port] and returns its canonical form.
func (p *Returns) checkHost(hostport, scheme string) (string, error) {
	if hostport == "" || strings.HasSuffix(hostport, ":") {
		return "", fmt.Errorf("%w: empty host or port", ErrReturn)
	}
	bracketed := strings.HasPrefix(hostport, "[")
	name, port := splitHostPort(strings.ToLower(hostport))
	if ip := net.ParseIP(name); ip != nil {
		if (ip.To4() == nil) != bracketed {
			return "", fmt.Errorf("%w: malformed IP literal", ErrReturn)
		}
		name = ip.String()
	} else if bracketed || !dnsName(name) {
		return "", fmt.Errorf("%w: host is not a DNS name or IP literal", ErrReturn)
	}
	if !p.hosts.Allows(name) {
		return "", fmt.Errorf("%w: host %q is not a resource host of this provider", ErrReturn, truncate(name, 64))
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w: malformed port", ErrReturn)
		}
		switch {
		case n == defaultPort(scheme):
			port = ""
		case p.ports[n] || (p.served != nil && p.served(n)):
			port = strconv.Itoa(n)
		default:
			return "", fmt.Errorf("%w: port %d is not one the gateway serves", ErrReturn, n)
		}
	}
	return canonHost(name, port), nil
}

// cleanPath normalises an escaped path: empty is "/", a run of leading
// slashes is one. A path whose decoded form starts with "//" or holds a
// control character or backslash is refused.
func cleanPath(esc string) (string, error) {
	if esc == "" {
		return "/", nil
	}
	if esc[0] != '/' {
		return "", fmt.Errorf("%w: relative path", ErrReturn)
	}
	esc = "/" + strings.TrimLeft(esc, "/")
	dec, err := url.PathUnescape(esc)
	if err != nil {
		return "", fmt.Errorf("%w: malformed escape in the path", ErrReturn)
	}
	if strings.HasPrefix(dec, "//") {
		return "", fmt.Errorf("%w: encoded slash at the start of the path", ErrReturn)
	}
	for i := 0; i < len(dec); i++ {
		if c := dec[i]; c < ' ' || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: encoded control character or backslash in the path", ErrReturn)
		}
	}
	return esc, nil
}

// dnsName reports whether s is a plausible host name: labels of letters,
// digits, '-' and '_', 1-63 bytes each, 253 in all, no empty label (so no
// trailing dot).
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}

func canonHost(name, port string) string {
	if strings.Contains(name, ":") {
		name = "[" + name + "]"
	}
	if port != "" {
		return name + ":" + port
	}
	return name
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Target is a checked return URL, kept as its parts.
type Target struct {
	scheme string
	host   string // lower case, [v6], :port unless the default
	path   string // escaped, starting with exactly one "/"
	query  string // raw
}

// String returns the absolute URL to put in a Location header.
func (t *Target) String() string {
	s := t.scheme + "://" + t.host + t.path
	if t.query != "" {
		s += "?" + t.query
	}
	return s
}

// Host returns the target's canonical host[:port].
func (t *Target) Host() string { return t.host }

// On returns the absolute URL of path and raw query on the target's
// origin, e.g. a handoff endpoint.
func (t *Target) On(path, query string) string {
	s := t.scheme + "://" + t.host + path
	if query != "" {
		s += "?" + query
	}
	return s
}

// OnHost reports whether a request to host (a Host header) reaches the
// target's host and port.
func (t *Target) OnHost(host string) bool {
	name, port := splitHostPort(strings.ToLower(host))
	if ip := net.ParseIP(name); ip != nil {
		name = ip.String()
	}
	if port == strconv.Itoa(defaultPort(t.scheme)) {
		port = ""
	}
	return canonHost(name, port) == t.host
}

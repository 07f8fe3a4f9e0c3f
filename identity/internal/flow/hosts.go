package flow

import "strings"

// HostList is a list of resource host patterns a login may return to:
// exact names ("app.example.com") or one-label wildcards
// ("*.example.com"). A pattern may carry a port, which is ignored here
// (ports are judged by [Returns]). A catch-all "*" never makes every
// host a safe redirect target, so it matches nothing.
type HostList []string

// Allows reports whether hostname (lower case, without port or
// brackets) matches one of the patterns.
func (l HostList) Allows(hostname string) bool {
	if hostname == "" {
		return false
	}
	for _, pat := range l {
		pat, _ = splitHostPort(strings.ToLower(pat))
		switch {
		case pat == "*" || pat == "":
		case strings.HasPrefix(pat, "*."):
			if i := strings.IndexByte(hostname, '.'); i > 0 && hostname[i+1:] == pat[2:] {
				return true
			}
		case pat == hostname:
			return true
		}
	}
	return false
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"
// without judging either part; brackets are removed.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return s, ""
		}
		host, rest := s[1:end], s[end+1:]
		if strings.HasPrefix(rest, ":") {
			port = rest[1:]
		}
		return host, port
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

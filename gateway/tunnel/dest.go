package tunnel

import (
	"fmt"
	"net/netip"
	"strings"
)

// rule is one compiled entry of destinations: an address range or a host
// name (exact, or every name under a domain), with a port range.
type rule struct {
	prefix netip.Prefix // valid for an address rule
	name   string       // a name rule's name; for a wildcard, the domain
	wild   bool         // name matches any name under this domain
	lo, hi uint16       // ports, inclusive
}

// parseRule parses one destination: "CIDR:ports", "IP:ports",
// "[IPv6 or IPv6 CIDR]:ports", "name:ports" or "*.domain:ports", where
// ports is "N", "N-M" or "*".
func parseRule(s string) (rule, error) {
	var r rule
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return r, fmt.Errorf("invalid destination %q (want host or CIDR, a colon, and ports: \"10.0.0.0/8:22\", \"db.internal:5432\")", s)
	}
	host, ports := s[:i], s[i+1:]
	var err error
	if r.lo, r.hi, err = parsePorts(ports); err != nil {
		return r, fmt.Errorf("destination %q: %w", s, err)
	}
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	switch {
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is6() != bracketed || p.Addr().Is4In6() {
			return r, fmt.Errorf("destination %q: invalid address range (IPv6 ranges go in brackets: \"[2001:db8::/32]:443\")", s)
		}
		if p != p.Masked() {
			return r, fmt.Errorf("destination %q: %s has host bits set (did you mean %s?)", s, p, p.Masked())
		}
		r.prefix = p
	case bracketed || isIPLiteral(host):
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" || a.Is6() != bracketed || a.Is4In6() {
			return r, fmt.Errorf("destination %q: invalid address (IPv6 addresses go in brackets: \"[2001:db8::1]:22\")", s)
		}
		r.prefix = netip.PrefixFrom(a, a.BitLen())
	default:
		name, wild := strings.CutPrefix(host, "*.")
		n, ok := normalName(name)
		if !ok {
			return r, fmt.Errorf("destination %q: invalid host name (want a name, or *.domain for every name under it)", s)
		}
		r.name, r.wild = n, wild
	}
	return r, nil
}

func parsePorts(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, ok := parsePort(a)
	hi = lo
	if ok && isRange {
		hi, ok = parsePort(b)
	}
	if !ok || lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("invalid ports %q (want N, N-M or *, from 1 to 65535)", s)
	}
	return lo, hi, nil
}

func (r *rule) port(p uint16) bool { return r.lo <= p && p <= r.hi }

// matchesName reports whether name rule r allows name (normal form) on
// port p.
func (r *rule) matchesName(name string, p uint16) bool {
	if r.name == "" || !r.port(p) {
		return false
	}
	if r.wild {
		return len(name) > len(r.name) && strings.HasSuffix(name, r.name) && name[len(name)-len(r.name)-1] == '.'
	}
	return name == r.name
}

// matchesAddr reports whether address rule r allows a on port p.
func (r *rule) matchesAddr(a netip.Addr, p uint16) bool {
	return r.prefix.IsValid() && r.port(p) && r.prefix.Contains(a)
}

// rules is a compiled destinations list.
type rules []rule

func (rs rules) allowsName(name string, p uint16) bool {
	for i := range rs {
		if rs[i].matchesName(name, p) {
			return true
		}
	}
	return false
}

func (rs rules) allowsAddr(a netip.Addr, p uint16) bool {
	for i := range rs {
		if rs[i].matchesAddr(a, p) {
			return true
		}
	}
	return false
}

package tunnel

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"portcullis/enforcement"
)

// fakeResolver answers from a table; names not in it do not exist.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	as, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func compile(t *testing.T, c Config) *Tunnel {
	t.Helper()
	c.Name, c.Hosts = "t", []string{"vpn.example.com"}
	c.Policy.Device.Certificate = enforcement.CertOff
	tn, err := Compile(c, enforcement.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func TestResolve(t *testing.T) {
	res := fakeResolver{
		"db.internal":       {"10.0.0.5"},
		"rebind.internal":   {"10.0.0.6", "127.0.0.1"},
		"loop.corp.example": {"127.0.0.1"},
		"meta.corp.example": {"169.254.169.254"},
		"web.corp.example":  {"192.0.2.10", "2001:db8::10"},
		"mapped.internal":   {"::ffff:127.0.0.1"},
		"other.example":     {"10.9.9.9"},
		"corp.example":      {"192.0.2.99"},
	}
	self := func(ap netip.AddrPort) bool { return ap == netip.MustParseAddrPort("10.0.0.1:8443") }
	strict := compile(t, Config{Destinations: []string{"10.0.0.0/8:22", "10.0.0.0/8:8443", "db.internal:5432", "rebind.internal:*",
		"*.corp.example:443", "mapped.internal:22", "[2001:db8::/32]:443"}})
	loose := compile(t, Config{Destinations: []string{"0.0.0.0/0:*", "[::/0]:*"}, Allow: AllowConfig{Loopback: true, LinkLocal: true}})
	tests := []struct {
		name   string
		tn     *Tunnel
		target string
		want   string // first address, or the refusal's reason
	}{
		{"address in range", strict, "10.1.2.3:22", "10.1.2.3:22"},
		{"address, wrong port", strict, "10.1.2.3:23", string(ReasonDestinationDenied)},
		{"address outside", strict, "192.0.2.1:22", string(ReasonDestinationDenied)},
		{"name rule", strict, "db.internal:5432", "10.0.0.5:5432"},
		{"name rule, wrong port", strict, "db.internal:5433", string(ReasonDestinationDenied)},
		{"name by address rule", strict, "db.internal:22", "10.0.0.5:22"},
		{"name resolving outside", strict, "other.example:443", string(ReasonDestinationDenied)},
		{"wildcard", strict, "web.corp.example:443", "192.0.2.10:443"},
		{"wildcard is not the domain", strict, "corp.example:443", string(ReasonDestinationDenied)},
		{"wildcard to loopback", strict, "loop.corp.example:443", string(ReasonDestinationReserved)},
		{"wildcard to metadata", strict, "meta.corp.example:443", string(ReasonDestinationReserved)},
		{"one address of many is loopback", strict, "rebind.internal:80", string(ReasonDestinationReserved)},
		{"mapped loopback", strict, "mapped.internal:22", string(ReasonDestinationReserved)},
		{"unknown name", strict, "nx.corp.example:443", string(ReasonDNSError)},
		{"self", strict, "10.0.0.1:8443", string(ReasonDestinationReserved)},
		{"ipv6 range", strict, "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"loose loopback", loose, "127.0.0.1:22", "127.0.0.1:22"},
		{"loose link-local", loose, "169.254.1.1:22", "169.254.1.1:22"},
		{"loose metadata still refused", loose, "169.254.169.254:80", string(ReasonDestinationReserved)},
		{"loose unspecified", loose, "0.0.0.0:80", string(ReasonDestinationReserved)},
		{"loose multicast", loose, "224.0.0.1:80", string(ReasonDestinationReserved)},
		{"loose ipv6 metadata", loose, "[fd00:ec2::254]:80", string(ReasonDestinationReserved)},
		{"loose self", loose, "10.0.0.1:8443", string(ReasonDestinationReserved)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := ParseTarget(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			addrs, why := tt.tn.Resolve(context.Background(), res, self, tg)
			got := ""
			switch {
			case why != nil:
				got = string(why.Reason)
			case len(addrs) > 0:
				got = addrs[0].String()
			}
			if got != tt.want {
				t.Errorf("Resolve(%s) = %q, want %q", tt.target, got, tt.want)
			}
		})
	}
}

func TestParseRule(t *testing.T) {
	good := []string{"10.0.0.0/8:22", "10.1.2.3:8000-8100", "[2001:db8::/32]:443", "[::1]:22", "db.internal:5432", "*.corp.internal:*"}
	bad := []string{"10.0.0.1/8:22", "10.0.0.0/8", "10.0.0.0/8:0", "10.0.0.0/8:9-1", "2001:db8::/32:443", "[10.0.0.0/8]:22",
		"*:22", "a.*.b:22", "db_internal:1", "[fe80::1%eth0]:22", "host:abc", ":22"}
	for _, s := range good {
		if _, err := parseRule(s); err != nil {
			t.Errorf("parseRule(%q) = %v", s, err)
		}
	}
	for _, s := range bad {
		if _, err := parseRule(s); err == nil {
			t.Errorf("parseRule(%q) accepted", s)
		}
	}
}

// FuzzParseRule checks that the destination parser never panics and that
// an accepted rule matches something only on its ports.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8:22", "[2001:db8::/32]:1-2", "*.a.b:*", "x:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRule(s)
		if err != nil {
			return
		}
		if r.lo == 0 || r.hi < r.lo || r.prefix.IsValid() == (r.name != "") {
			t.Fatalf("%q: inconsistent rule %+v", s, r)
		}
	})
}

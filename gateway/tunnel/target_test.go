package tunnel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want string // normal form; "" means refused
		err  error
	}{
		{"db.internal:5432", "db.internal:5432", nil},
		{"DB.Internal.:5432", "db.internal:5432", nil},
		{"10.1.2.3:22", "10.1.2.3:22", nil},
		{"[2001:db8::1]:443", "[2001:db8::1]:443", nil},
		{"[::ffff:127.0.0.1]:22", "127.0.0.1:22", nil},
		{"a-b.c:1", "a-b.c:1", nil},
		{"host:65535", "host:65535", nil},
		{"host", "", ErrTargetSyntax},
		{":22", "", ErrTargetSyntax},
		{"host:", "", ErrTargetPort},
		{"host:0", "", ErrTargetPort},
		{"host:65536", "", ErrTargetPort},
		{"host:+22", "", ErrTargetPort},
		{"host:022222", "", ErrTargetPort},
		{"2001:db8::1:443", "", ErrTargetSyntax},
		{"[fe80::1%eth0]:22", "", ErrTargetHost},
		{"[10.0.0.1]:22", "", ErrTargetHost},
		{"0177.0.0.1:22", "", ErrTargetHost},
		{"127.1:22", "", ErrTargetHost},
		{"0x7f.1:22", "", ErrTargetHost},
		{"2130706433:22", "", ErrTargetHost},
		{"user@host:22", "", ErrTargetHost},
		{"ho_st:22", "", ErrTargetHost},
		{"-host:22", "", ErrTargetHost},
		{"host-:22", "", ErrTargetHost},
		{"a..b:22", "", ErrTargetHost},
		{"h%6fst:22", "", ErrTargetHost},
		{"host/x:22", "", ErrTargetHost},
		{strings.Repeat("a", 64) + ".b:22", "", ErrTargetHost},
		{strings.Repeat("a.", 130) + "b:22", "", ErrTargetSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.want == "" {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseTarget(%q) = %v, %v; want error %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParseTarget(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzParseTarget checks that an accepted target is in normal form,
// parses to itself, and names either an IP (no zone, not IPv4-mapped) or
// a lower-case DNS name.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"db.internal:5432", "10.1.2.3:22", "[2001:db8::1]:443", "[::ffff:1.2.3.4]:1",
		"0177.0.0.1:22", "[fe80::1%25eth0]:22", "a:0", "A.B.:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		if tg.Port == 0 {
			t.Fatalf("%q: port 0 accepted", s)
		}
		if tg.IsAddr() {
			if tg.Name != "" || tg.Addr.Zone() != "" || tg.Addr.Is4In6() {
				t.Fatalf("%q: bad address %v", s, tg)
			}
		} else if tg.Name != strings.ToLower(tg.Name) || tg.Name == "" || strings.HasSuffix(tg.Name, ".") {
			t.Fatalf("%q: name %q not in normal form", s, tg.Name)
		} else if _, err := netip.ParseAddr(tg.Name); err == nil {
			t.Fatalf("%q: address accepted as a name", s)
		}
		again, err := ParseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("%q: normal form %q parses to %v, %v", s, tg.String(), again, err)
		}
	})
}

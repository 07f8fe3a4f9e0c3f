package gateway

import (
	"net/url"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in              string
		name, authority string // both empty: refused
	}{
		{"a.localhost", "a.localhost", "a.localhost"},
		{"a.localhost:8443", "a.localhost", "a.localhost:8443"},
		{"A.LocalHost:8443", "a.localhost", "a.localhost:8443"},
		{"a.localhost.", "a.localhost", "a.localhost"},
		{"a.localhost.:8443", "a.localhost", "a.localhost:8443"},
		{"localhost", "localhost", "localhost"},
		{"x-1.b2.example", "x-1.b2.example", "x-1.b2.example"},
		{"127.0.0.1", "127.0.0.1", "127.0.0.1"},
		{"127.0.0.1:65535", "127.0.0.1", "127.0.0.1:65535"},
		{"[::1]", "::1", "[::1]"},
		{"[::1]:8443", "::1", "[::1]:8443"},
		{"[0:0::0001]:8443", "::1", "[::1]:8443"},
		{"[2001:DB8::1]", "2001:db8::1", "[2001:db8::1]"},
		{"[::ffff:1.2.3.4]", "::ffff:1.2.3.4", "[::ffff:1.2.3.4]"},

		{"", "", ""},
		{"a.localhost..", "", ""},
		{".", "", ""},
		{".a.localhost", "", ""},
		{"a..localhost", "", ""},
		{"a%2elocalhost", "", ""},
		{`b.localhost:1", for=6.6.6.6;host="a.localhost`, "", ""},
		{"b.localhost:1,evil.example", "", ""},
		{"b.localhost,evil.example", "", ""},
		{"a.localhost:", "", ""},
		{"a.localhost:0", "", ""},
		{"a.localhost:08443", "", ""},
		{"a.localhost:65536", "", ""},
		{"a.localhost:99999", "", ""},
		{"a.localhost:+443", "", ""},
		{"a.localhost:443:443", "", ""},
		{"a_b.localhost", "", ""},
		{"-a.localhost", "", ""},
		{"a-.localhost", "", ""},
		{"a b.localhost", "", ""},
		{"user@a.localhost", "", ""},
		{"é.localhost", "", ""},
		{strings.Repeat("a", 64) + ".localhost", "", ""},
		{strings.Repeat("a.", 127) + "ab", "", ""}, // 255 characters
		{"1.2.3", "", ""},
		{"127.1", "", ""},
		{"0x7f.0.0.1", "", ""},
		{"a.0x7f", "", ""},
		{"01.2.3.4", "", ""},
		{"256.1.1.1", "", ""},
		{"::1", "", ""},
		{"[::1", "", ""},
		{"[::1]x", "", ""},
		{"[fe80::1%25eth0]", "", ""},
		{"[1.2.3.4]", "", ""},
		{"[v1.x]", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			name, authority, ok := normalizeHost(tt.in)
			if ok != (tt.name != "") || name != tt.name || authority != tt.authority {
				t.Errorf("normalizeHost(%q) = %q, %q, %v; want %q, %q", tt.in, name, authority, ok, tt.name, tt.authority)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw      string // the request target's path as sent
		want     string // "" when refused
		err      *pathError
		trailing bool
	}{
		{raw: "/", want: "/"},
		{raw: "/a/b/", want: "/a/b/"},
		{raw: "/a.b/c..d", want: "/a.b/c..d"},
		{raw: "/a%20b", want: "/a b"},
		{raw: "/%61dmin", want: "/admin"},
		{raw: "/caf%C3%A9", want: "/café"},
		{raw: "/a/../admin", want: "/admin"},
		{raw: "/public/../../admin", want: "/admin"},
		{raw: "//admin", want: "/admin"},
		{raw: "/a/./b", want: "/a/b"},
		{raw: "/a/..", want: "/"},
		{raw: "/..", want: "/"},
		{raw: "/admin.", want: "/admin.", trailing: true},
		{raw: "/admin%20", want: "/admin ", trailing: true},
		{raw: "/a./b", want: "/a./b", trailing: true},

		{raw: "/admin%00", err: errPathControl},
		{raw: "/admin%0a", err: errPathControl},
		{raw: "/admin%7f", err: errPathControl},
		{raw: "/admin%09", err: errPathControl},
		{raw: `/public/..\admin`, err: errPathBackslash},
		{raw: "/public/..%5cadmin", err: errPathEncodedSep},
		{raw: "/public/..%5Cadmin", err: errPathBackslash}, // Go keeps no RawPath: %5C is how it escapes a backslash
		{raw: "/a%2fb", err: errPathEncodedSep},
		{raw: "/a%2Fb", err: errPathEncodedSep},
		{raw: "/%2e%2e/admin", err: errPathEncodedSep},
		{raw: "/a/%2E/admin", err: errPathEncodedSep},
		{raw: "/%2561dmin", err: errPathDoubleEncode},
		{raw: "/a%252fb", err: errPathDoubleEncode},
		{raw: "/a%25%32%66b", err: errPathDoubleEncode},
		{raw: "/admin;x", err: errPathSemicolon},
		{raw: "/x/..;/admin", err: errPathSemicolon},
		{raw: "/admin%3bx", err: errPathSemicolon},
		{raw: "/..%c0%af../admin", err: errPathUTF8},
		{raw: "/%C0", err: errPathUTF8},
		{raw: "/a/.../b", err: errPathAmbiguous},
		{raw: "/a/. /b", err: errPathAmbiguous},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := url.ParseRequestURI(tt.raw)
			if err != nil {
				t.Fatalf("ParseRequestURI: %v", err)
			}
			got, trailing, perr := normalizePath(u)
			if got != tt.want || perr != tt.err || trailing != tt.trailing {
				t.Errorf("normalizePath(%q) = %q, %v, %v; want %q, %v, %v", tt.raw, got, trailing, perr, tt.want, tt.trailing, tt.err)
			}
		})
	}
}

func TestTrimSegments(t *testing.T) {
	for in, want := range map[string]string{
		"/admin.": "/admin", "/admin /x": "/admin/x", "/a../b.": "/a/b", "/a/b/": "/a/b/",
	} {
		if got := trimSegments(in); got != want {
			t.Errorf("trimSegments(%q) = %q, want %q", in, got, want)
		}
	}
}

// The edge checks run on every request: a normal host and path cost no
// allocation.
func TestNormalizeAllocatesNothing(t *testing.T) {
	u := &url.URL{Path: "/api/v2/users/42"}
	n := testing.AllocsPerRun(100, func() {
		if _, _, ok := normalizeHost("app.example.com:8443"); !ok {
			t.Fatal("refused")
		}
		if _, _, err := normalizePath(u); err != nil {
			t.Fatal(err.detail)
		}
	})
	if n != 0 {
		t.Errorf("normalizing allocates %v times", n)
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"a.localhost", "A.b.:1", "[::1]:8443", "127.0.0.1", `b:1", for=x`, "a,b", "1.2.3", "[::ffff:1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		name, authority, ok := normalizeHost(h)
		if !ok {
			return
		}
		// What the upstream receives is normal already, and routes alike.
		n2, a2, ok2 := normalizeHost(authority)
		if !ok2 || n2 != name || a2 != authority {
			t.Fatalf("normalizeHost(%q) = %q, %q; again: %q, %q, %v", h, name, authority, n2, a2, ok2)
		}
		if strings.ContainsAny(authority, "\",; \t\\=@%/?#") || strings.ToLower(authority) != authority {
			t.Fatalf("normalizeHost(%q) passes %q on", h, authority)
		}
		if hostOnly(authority) != name {
			t.Fatalf("router reads %q as %q, normalizeHost as %q", authority, hostOnly(authority), name)
		}
	})
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/admin;x", "/%2561", "/a%2fb", "/a./b", "//x", "/a b", "/caf%C3%A9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		p, _, perr := normalizePath(u)
		if perr != nil {
			return
		}
		if p == "" || p[0] != '/' || cleanPath(p) != p {
			t.Fatalf("normalizePath(%q) = %q: not clean", raw, p)
		}
		if strings.ContainsAny(p, "\\;\x00") {
			t.Fatalf("normalizePath(%q) = %q", raw, p)
		}
		// The upstream receives p escaped canonically; it decodes to p,
		// which is normal already.
		sent := (&url.URL{Path: p}).EscapedPath()
		u2, err := url.ParseRequestURI(sent)
		if err != nil || u2.Path != p {
			t.Fatalf("forwarded %q decodes to %q (%v), want %q", sent, u2.Path, err, p)
		}
		if p2, _, perr := normalizePath(u2); perr != nil || p2 != p {
			t.Fatalf("forwarded %q normalizes to %q, %v; want %q", sent, p2, perr, p)
		}
	})
}

// BenchmarkNormalize is the edge's cost for a normal request: compare it
// with BenchmarkServeHTTP.
func BenchmarkNormalize(b *testing.B) {
	u := &url.URL{Path: "/api/v2/users/42"}
	b.ReportAllocs()
	for b.Loop() {
		normalizeHost("app.example.com:8443")
		normalizePath(u)
	}
}

package gateway

import (
	"fmt"
	"testing"
)

func testRouter(t testing.TB) *router {
	mk := func(name string, hosts, paths []string) *resource {
		return &resource{name: name, cfg: &ResourceConfig{Name: name, Hosts: hosts, Paths: paths}}
	}
	return newRouter([]*resource{
		mk("root", []string{"app.example.com"}, []string{"/"}),
		mk("api", []string{"app.example.com"}, []string{"/api"}),
		mk("apiv2", []string{"app.example.com"}, []string{"/api/v2/"}),
		mk("wild", []string{"*.example.com"}, []string{"/"}),
		mk("any", []string{"*"}, []string{"/public"}),
		mk("ip", []string{"127.0.0.1", "[::1]"}, []string{"/"}),
		mk("fold-root", []string{"fold.example.com."}, []string{"/"}),
		{name: "fold-admin", cfg: &ResourceConfig{Name: "fold-admin", Hosts: []string{"fold.example.com"}, Paths: []string{"/Admin"}, CaseInsensitive: true}},
	})
}

func TestRouterMatch(t *testing.T) {
	rt := testRouter(t)
	tests := []struct{ host, path, want string }{
		{"app.example.com", "/", "root"},
		{"app.example.com", "/x", "root"},
		{"app.example.com:8443", "/api", "api"},
		{"APP.Example.COM", "/api/users", "api"},
		{"app.example.com", "/apix", "root"}, // segment-wise: /api does not match /apix
		{"app.example.com", "/api/v2", "apiv2"},
		{"app.example.com", "/api/v2/x", "apiv2"},
		{"other.example.com", "/", "wild"},
		{"a.b.example.com", "/", ""},        // one label only
		{"example.com", "/public/x", "any"}, // wildcard needs a label
		{"nowhere.test", "/public", "any"},
		{"nowhere.test", "/private", ""},
		{"127.0.0.1:8443", "/", "ip"},
		{"[::1]:8443", "/", "ip"},
		{"", "/public", "any"},
		{"app.example.com", "/API", "root"}, // case-sensitive by default
		{"fold.example.com", "/admin", "fold-admin"},
		{"fold.example.com", "/ADMIN/x", "fold-admin"},
		{"fold.example.com", "/admins", "fold-root"},
		{"fold.example.com", "/adm", "fold-root"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			got := ""
			if r := rt.match(tt.host, tt.path); r != nil {
				got = r.name
			}
			if got != tt.want {
				t.Errorf("match(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
			}
		})
	}
}

func TestRouterMatchAllocatesNothing(t *testing.T) {
	rt := testRouter(t)
	if n := testing.AllocsPerRun(100, func() { rt.match("app.example.com:8443", "/api/v2/users") }); n != 0 {
		t.Errorf("match allocates %v times", n)
	}
}

func BenchmarkRoute(b *testing.B) {
	var rs []*resource
	for i := range 1000 {
		name := fmt.Sprintf("r%d", i)
		rs = append(rs, &resource{name: name, cfg: &ResourceConfig{Name: name,
			Hosts: []string{fmt.Sprintf("app%d.example.com", i%100)}, Paths: []string{fmt.Sprintf("/p%d", i)}}})
	}
	rt := newRouter(rs)
	b.ReportAllocs()
	for b.Loop() {
		if rt.match("app42.example.com:8443", "/p942/x") == nil {
			b.Fatal("no match")
		}
	}
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"a.example:443": "a.example", "a.example": "a.example", "[::1]:8443": "::1", "[::1]": "::1",
		"127.0.0.1:1": "127.0.0.1", "::1": "::1",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	g := newIDGen()
	seen := map[string]bool{}
	for range 1000 {
		id, _ := g.next()
		if seen[id] || len(id) != 29 {
			t.Fatalf("id %q repeated or malformed", id)
		}
		seen[id] = true
	}
}

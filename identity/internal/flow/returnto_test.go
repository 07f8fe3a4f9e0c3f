package flow

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"portcullis/identity/internal/flow/flowtest"
)

// testReturns allows app.example.test, *.apps.example.test and the
// callback host auth.example.test:8443; the gateway serves 8443 and 9443.
func testReturns() *Returns {
	return NewReturns([]string{"auth.example.test:8443", flowtest.AllowedHost, "*.apps.example.test", "*", "127.0.0.1", "[::1]"},
		func(p int) bool { return p == 9443 }, false)
}

var testBase = &url.URL{Scheme: "https", Host: "auth.example.test:8443"}

func TestReturnsCheck(t *testing.T) {
	p := testReturns()
	tests := []struct {
		raw  string
		want string // "" refused
	}{
		{"/x?y=1#frag", "https://auth.example.test:8443/x?y=1"},
		{"/", "https://auth.example.test:8443/"},
		{"https://app.example.test", "https://app.example.test/"},
		{"https://app.example.test/x?y=%2F#f", "https://app.example.test/x?y=%2F"},
		{"HTTPS://APP.Example.TEST:443/A", "https://app.example.test/A"},
		{"https://app.example.test:8443/x", "https://app.example.test:8443/x"},
		{"https://app.example.test:09443/x", "https://app.example.test:9443/x"},
		{"https://a.apps.example.test/", "https://a.apps.example.test/"},
		{"https://127.0.0.1:9443/", "https://127.0.0.1:9443/"},
		{"https://[::1]:9443/", "https://[::1]:9443/"},
		{"https://app.example.test//evil.example/x", "https://app.example.test/evil.example/x"},
		{"https://app.example.test/a%20b/%2e%2e/c", "https://app.example.test/a%20b/%2e%2e/c"},
		{"https://b.a.apps.example.test/", ""},
		{"https://apps.example.test/", ""},
		{"https://anything.example/", ""}, // "*" allows nothing
		{"https://app.example.test:8080/", ""},
		{"https://[::1/", ""},
		{"https://::1/", ""},
	}
	for _, tt := range tests {
		got, err := p.Check(tt.raw, testBase)
		s := ""
		if err == nil {
			s = got.String()
		} else if !errors.Is(err, ErrReturn) {
			t.Errorf("Check(%q) error %v does not wrap ErrReturn", tt.raw, err)
		}
		if s != tt.want {
			t.Errorf("Check(%q) = %q (%v), want %q", tt.raw, s, err, tt.want)
		}
	}
}

func TestReturnsHostile(t *testing.T) {
	p := testReturns()
	for _, raw := range flowtest.HostileReturns {
		got, err := p.Check(raw, testBase)
		if err != nil {
			continue
		}
		flowtest.CheckLocation(t, testBase.String()+"/", got.String(), allowedFor(got.String()), []string{"", "8443", "9443"})
	}
}

func TestHostList(t *testing.T) {
	l := HostList{"app.example.com", "*.corp.example", "*", "api.example.com:8443"}
	for host, want := range map[string]bool{
		"app.example.com": true, "x.corp.example": true, "api.example.com": true,
		"corp.example": false, "a.b.corp.example": false, "evil.example": false, "": false,
	} {
		if got := l.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestTargetOnHost(t *testing.T) {
	tg, err := testReturns().Check("https://app.example.test/x", testBase)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"app.example.test": true, "APP.example.test:443": true, "app.example.test:8443": false, "other.example.test": false,
	} {
		if got := tg.OnHost(host); got != want {
			t.Errorf("OnHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzReturnsCheck holds the rule's one property: whatever is accepted
// yields a Location that, resolved against the request, lands on an
// allowed host and port over https, and reads the same to a browser.
func FuzzReturnsCheck(f *testing.F) {
	for _, s := range flowtest.HostileReturns {
		f.Add(s)
	}
	f.Add("/x?y=1")
	f.Add("https://a.apps.example.test:9443/p?q#f")
	f.Add("https://[::1]:9443/")
	p := testReturns()
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := p.Check(raw, testBase)
		if err != nil {
			return
		}
		loc := got.String()
		flowtest.CheckLocation(t, testBase.String()+"/", loc, allowedFor(loc), []string{"", "8443", "9443"})
		if again, err := p.Check(loc, testBase); err != nil || again.String() != loc {
			t.Errorf("Check(%q) = %q, which checks as %v %v", raw, loc, again, err)
		}
	})
}

// allowedFor lists the hostnames testReturns allows that loc could be
// on (the wildcard expanded to loc's own host when it matches).
func allowedFor(loc string) []string {
	hosts := []string{"auth.example.test", flowtest.AllowedHost, "127.0.0.1", "::1"}
	if u, err := url.Parse(loc); err == nil {
		h := u.Hostname()
		if i := strings.IndexByte(h, '.'); i > 0 && h[i+1:] == "apps.example.test" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

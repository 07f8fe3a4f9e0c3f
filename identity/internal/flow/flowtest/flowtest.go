// Package flowtest holds what the login tests of identity/oidc and
// identity/saml share: a table of hostile return URLs and a check that a
// redirect lands where it may.
package flowtest

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// AllowedHost is the resource host the tables are written for; tests
// configure it (and nothing like evil.example) as a resource host.
const AllowedHost = "app.example.test"

// HostileReturns are return URLs that try to leave the allowed hosts and
// ports, or to smuggle a second host into a browser's reading of a
// path. None may produce a redirect anywhere but an allowed origin.
var HostileReturns = []string{
	"//evil.example/x",
	"///evil.example/x",
	"/\\evil.example",
	"/\\/evil.example",
	"\\\\evil.example",
	"/%5cevil.example",
	"/%2f%2fevil.example",
	"/%2F/evil.example",
	"%2f%2fevil.example",
	"/%09/evil.example",
	"/\t/evil.example",
	"/\n/evil.example",
	"/ /evil.example",
	"https://" + AllowedHost + "/\r\nLocation: https://evil.example/",
	"https://" + AllowedHost + "//evil.example/x",
	"https://" + AllowedHost + "///evil.example/x",
	"https://" + AllowedHost + "@evil.example/",
	"https://" + AllowedHost + ":443@evil.example/",
	"https://evil.example\\@" + AllowedHost + "/",
	"https://evil.example/",
	"https://evil.example/" + AllowedHost,
	"https://" + AllowedHost + ".evil.example/",
	"https://" + AllowedHost + "%2eevil.example/",
	"https://" + AllowedHost + "./",
	"https://" + AllowedHost + ":1/",
	"https://" + AllowedHost + ":99999/",
	"https://" + AllowedHost + ":/",
	"http://" + AllowedHost + "/",
	"https:evil.example",
	"https:/evil.example",
	"https:///evil.example",
	"javascript:alert(1)",
	"JaVaScRiPt:alert(1)",
	"data:text/html,<script>alert(1)</script>",
	"evil.example/x",
	" https://evil.example/",
	"https://[::1]/",
	"https://" + AllowedHost + "/\u2028evil",
	"",
}

// CheckLocation fails t unless loc, a Location header answered to a
// request for reqURL, is an absolute https URL on one of hosts
// (hostnames) with one of ports ("" for the default).
func CheckLocation(t testing.TB, reqURL, loc string, hosts, ports []string) {
	t.Helper()
	if !strings.HasPrefix(loc, "https://") {
		t.Errorf("Location %q is not an absolute https URL", loc)
		return
	}
	for i := 0; i < len(loc); i++ {
		if c := loc[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			t.Errorf("Location %q has byte %#x at %d", loc, c, i)
			return
		}
	}
	base, err := url.Parse(reqURL)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Errorf("Location %q does not parse: %v", loc, err)
		return
	}
	got := base.ResolveReference(u)
	if got.Scheme != "https" || got.User != nil || !slices.Contains(hosts, got.Hostname()) || !slices.Contains(ports, got.Port()) {
		t.Errorf("Location %q lands on %s://%s, want one of %v ports %v", loc, got.Scheme, got.Host, hosts, ports)
	}
	// What a browser reads as the authority ends at the first "/"
	// after "https://": it must be the host Go read.
	rest := loc[len("https://"):]
	if i := strings.IndexAny(rest, "/?#"); i < 0 || rest[:i] != got.Host || rest[i] != '/' || strings.HasPrefix(rest[i:], "//") {
		t.Errorf("Location %q: authority or path is ambiguous", loc)
	}
}

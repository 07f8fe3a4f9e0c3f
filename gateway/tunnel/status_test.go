package tunnel

import "testing"

func TestProxyStatus(t *testing.T) {
	s := ProxyStatus{Proxy: ProxyName, Error: "http_request_denied", Details: `device.not_compliant`}
	if got, want := s.String(), `portcullis; error=http_request_denied; details="device.not_compliant"`; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	tests := []struct {
		in   string
		want ProxyStatus
		ok   bool
	}{
		{s.String(), s, true},
		{`edge; error=dns_error; rcode="NXDOMAIN", portcullis; error=destination_ip_prohibited; details="tunnel.destination_denied"`,
			ProxyStatus{Proxy: "portcullis", Error: "destination_ip_prohibited", Details: "tunnel.destination_denied"}, true},
		{`"a proxy";received-status=503;details="x \"y\" \\"`, ProxyStatus{Proxy: "a proxy", Details: `x "y" \`}, true},
		{`p; next-hop=?1; error=connection_timeout`, ProxyStatus{Proxy: "p", Error: "connection_timeout"}, true},
		{``, ProxyStatus{}, false},
		{`p; error=`, ProxyStatus{}, false},
		{`p; details="unterminated`, ProxyStatus{}, false},
		{`p; Error=x`, ProxyStatus{}, false},
		{`p q`, ProxyStatus{}, false},
	}
	for _, tt := range tests {
		got, err := ParseProxyStatus(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseProxyStatus(%q) = %+v, %v; want %+v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzProxyStatus checks that what the gateway writes the client reads
// back, and that the parser never panics on anything else.
func FuzzProxyStatus(f *testing.F) {
	f.Add("portcullis", "http_request_denied", "device.not_compliant", `a; error=b; details="c", d`)
	f.Fuzz(func(t *testing.T, proxy, perr, details, raw string) {
		ParseProxyStatus(raw)
		if !validToken(proxy) || !validToken(perr) || details == "" {
			return
		}
		s := ProxyStatus{Proxy: proxy, Error: perr, Details: details}
		got, err := ParseProxyStatus(s.String())
		want := s
		want.Details = printable(details)
		if want.Details == "" {
			return
		}
		if err != nil || got != want {
			t.Fatalf("%q: read back %+v, %v; want %+v", s.String(), got, err, want)
		}
	})
}

func validToken(s string) bool {
	if s == "" || !('a' <= s[0]|0x20 && s[0]|0x20 <= 'z' || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func printable(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x20 && s[i] <= 0x7e {
			b = append(b, s[i])
		}
	}
	return string(b)
}

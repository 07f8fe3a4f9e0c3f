package posture

import "testing"

func TestCheckHTTPSURLLoopbackOnly(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://acme.okta.com", true},
		{"http://127.0.0.1:8080/ssf", true},
		{"http://127.1.2.3", true},
		{"http://[::1]:9000", true},
		{"http://localhost:9000", true},
		{"http://[::ffff:127.0.0.1]", true},
		{"http://127.attacker.example", false},
		{"http://127.0.0.1.nip.io", false},
		{"http://10.0.0.1", false},
		{"http://acme.okta.com", false},
		{"ftp://127.0.0.1", false},
	}
	for _, tt := range tests {
		if err := checkHTTPSURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("checkHTTPSURL(%q) = %v, want ok %v", tt.url, err, tt.ok)
		}
	}
}

package gateway

import "testing"

// TestConnForwarded checks the connection's cache of forwarding values:
// the streams of one HTTP/2 connection may name different hosts, and a
// migrated QUIC connection has a new address; each must get its own.
func TestConnForwarded(t *testing.T) {
	var ci connInfo
	tests := []struct {
		remote, host string
		wantFor      string
		wantFwd      string
	}{
		{"192.0.2.1:5000", "a.example", "192.0.2.1", "for=192.0.2.1;host=a.example;proto=https"},
		{"192.0.2.1:5000", "a.example", "192.0.2.1", "for=192.0.2.1;host=a.example;proto=https"},
		{"192.0.2.1:5000", "b.example:8443", "192.0.2.1", "for=192.0.2.1;host=\"b.example:8443\";proto=https"},
		{"[2001:db8::1]:443", "b.example:8443", "2001:db8::1", "for=\"[2001:db8::1]\";host=\"b.example:8443\";proto=https"},
		{"192.0.2.1:5000", "a.example", "192.0.2.1", "for=192.0.2.1;host=a.example;proto=https"},
	}
	var prev *forwardedValues
	for i, tt := range tests {
		fv := ci.forwarded(tt.remote, tt.host)
		want := [4]string{tt.wantFor, tt.host, "https", tt.wantFwd}
		if fv.vals != want {
			t.Errorf("request %d (%s, %s): values %q, want %q", i, tt.remote, tt.host, fv.vals, want)
		}
		if i == 1 && fv != prev {
			t.Errorf("request %d: the same address and host made new values", i)
		}
		prev = fv
	}
}

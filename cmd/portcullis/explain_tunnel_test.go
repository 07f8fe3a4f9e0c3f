package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestExplainTunnel dry-runs CONNECTs through configs/tunnel.yaml: the
// policy first, as for a resource, then the destination on its address.
func TestExplainTunnel(t *testing.T) {
	base := []string{"--config", "../../configs/tunnel.yaml", "--tunnel", "corp", "--device", "d1"}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"allowed", []string{"--dest", "10.1.2.3:22", "--compliant", "true"}, 0, "addresses: [10.1.2.3:22]"},
		{"outside the destinations", []string{"--dest", "10.1.2.3:23", "--compliant", "true"}, 3, "reason:   tunnel.destination_denied"},
		{"loopback", []string{"--dest", "127.0.0.1:22", "--compliant", "true"}, 3, "reason:   tunnel.destination_reserved"},
		{"bad target", []string{"--dest", "0177.0.0.1:22", "--compliant", "true"}, 3, "reason:   tunnel.invalid_target"},
		{"policy first", []string{"--dest", "10.1.2.3:22", "--compliant", "false"}, 3, "reason:   device.not_compliant"},
		{"unknown tunnel", []string{"--dest", "10.1.2.3:22", "--tunnel", "nope"}, 1, ""},
		{"dest without tunnel", []string{"--dest", "10.1.2.3:22", "--tunnel", ""}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cmdExplain(append(append([]string{}, base...), tt.args...), &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Errorf("explain %v = %d\n%s%s\nwant exit %d with %q", tt.args, code, out.String(), errOut.String(), tt.code, tt.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"portcullis/posture"
)

// TestExplainRevocations checks that explain gathers revocations as the
// gateway does: from flags, and from a state directory.
func TestExplainRevocations(t *testing.T) {
	const cfg = "../../configs/quickstart.yaml"
	base := []string{"--config", cfg, "--resource", "demo", "--device", "d1", "--compliant", "true", "--user", "a@b"}
	tests := []struct {
		name   string
		args   []string
		code   int
		reason string
	}{
		{"allowed", nil, 0, "reason:   allowed"},
		{"device revoked", []string{"--revoked", "device"}, 3, "rule:     revocation.device"},
		{"certificate user revoked", []string{"--revoked", "user"}, 3, "rule:     revocation.user"},
		{"certificate revoked by CRL", []string{"--cert", "revoked"}, 3, "reason:   device.certificate_revoked"},
		{"unknown revocation", []string{"--revoked", "laptop"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cmdExplain(append(append([]string{}, base...), tt.args...), &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.reason) {
				t.Errorf("explain %v = %d\n%s%s\nwant exit %d with %q", tt.args, code, out.String(), errOut.String(), tt.code, tt.reason)
			}
		})
	}

	t.Run("state directory", func(t *testing.T) {
		dir := t.TempDir()
		db, err := posture.Open(dir, posture.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		key := posture.DeviceKey{CA: "dev", ID: "d1"}
		if _, err := db.ApplyPosture(ctx, []posture.PostureEvent{{Key: key, Posture: posture.Posture{
			Source: "uem", EventID: "e1", Managed: true, Compliance: posture.Compliant, State: posture.StateActive, ObservedAt: time.Now(),
		}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Revoke(ctx, posture.Revocation{Kind: posture.RevokeDevice, Device: key}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		var out, errOut bytes.Buffer
		code := cmdExplain([]string{"--config", cfg, "--resource", "demo", "--device", "d1", "--user", "a@b", "--state", dir}, &out, &errOut)
		if code != 3 || !strings.Contains(out.String(), "rule:     revocation.device") {
			t.Errorf("explain --state with the device revoked = %d\n%s%s", code, out.String(), errOut.String())
		}
	})
}

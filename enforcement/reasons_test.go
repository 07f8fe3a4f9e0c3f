package enforcement

import (
	"regexp"
	"testing"
)

func TestReasons(t *testing.T) {
	code := regexp.MustCompile(`^(allowed|[a-z]+\.[a-z_]+)$`)
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if seen[r] {
			t.Errorf("reason %s listed twice", r)
		}
		seen[r] = true
		if !code.MatchString(string(r)) {
			t.Errorf("reason %q is not of the form area.snake_case", r)
		}
		if r.Message() == Reason("no.such_reason").Message() {
			t.Errorf("reason %s has no message", r)
		}
	}
	if len(seen) != len(reasonMessages) {
		t.Errorf("Reasons() lists %d reasons, messages cover %d", len(seen), len(reasonMessages))
	}
}

// TestReasonStrings pins released values: changing one breaks SIEM
// queries and deny pages.
func TestReasonStrings(t *testing.T) {
	want := map[Reason]string{
		ReasonAllowed:                 "allowed",
		ReasonCertificateMissing:      "device.certificate_missing",
		ReasonCertificateInvalid:      "device.certificate_invalid",
		ReasonCertificateRevoked:      "device.certificate_revoked",
		ReasonCertificateUnverifiable: "device.certificate_unverifiable",
		ReasonDeviceUnknown:           "device.unknown",
		ReasonPostureStale:            "device.posture_stale",
		ReasonNotManaged:              "device.not_managed",
		ReasonNotCompliant:            "device.not_compliant",
		ReasonComplianceUnknown:       "device.compliance_unknown",
		ReasonThreatTooHigh:           "device.threat_too_high",
		ReasonThreatUnknown:           "device.threat_unknown",
		ReasonStateBlocked:            "device.state_blocked",
		ReasonUserMismatch:            "device.user_mismatch",
		ReasonLoginRequired:           "user.login_required",
		ReasonUserUnknown:             "user.unknown",
		ReasonNotInGroup:              "user.not_in_group",
		ReasonRiskTooHigh:             "user.risk_too_high",
		ReasonRiskUnknown:             "user.risk_unknown",
		ReasonSessionRevoked:          "session.revoked",
		ReasonMFARequired:             "session.mfa_required",
		ReasonReauthRequired:          "session.reauth_required",
		ReasonExpressionDenied:        "policy.expression_denied",
		ReasonExpressionError:         "policy.expression_error",
		ReasonRouteNotFound:           "route.not_found",
		ReasonIdPUnavailable:          "idp.unavailable",
		ReasonAdminClosed:             "admin.closed",
	}
	for r, s := range want {
		if string(r) != s {
			t.Errorf("reason %q, want %q", r, s)
		}
	}
	if len(want) != len(Reasons()) {
		t.Errorf("pinned %d reasons, Reasons() has %d", len(want), len(Reasons()))
	}
}

package enforcement

// Reason codes. Their string values are part of the public interface (deny
// pages, problem documents, decision logs, SIEM queries): released values
// never change. The comment after each names the verdict [Decide] gives it;
// codes marked "gateway" are produced outside Decide.
const (
	ReasonAllowed Reason = "allowed" // Allow

	ReasonCertificateMissing Reason = "device.certificate_missing" // Login
	ReasonCertificateInvalid Reason = "device.certificate_invalid" // Deny
	ReasonCertificateRevoked Reason = "device.certificate_revoked" // Deny
	// ReasonCertificateUnverifiable: the certificate's revocation status
	// could not be established (OCSP hard-fail, stale CRL).
	ReasonCertificateUnverifiable Reason = "device.certificate_unverifiable" // Deny
	ReasonDeviceUnknown           Reason = "device.unknown"                  // Remediate
	ReasonPostureStale            Reason = "device.posture_stale"            // Remediate
	ReasonNotManaged              Reason = "device.not_managed"              // Remediate
	ReasonNotCompliant            Reason = "device.not_compliant"            // Remediate
	ReasonComplianceUnknown       Reason = "device.compliance_unknown"       // Remediate
	ReasonThreatTooHigh           Reason = "device.threat_too_high"          // Remediate
	ReasonThreatUnknown           Reason = "device.threat_unknown"           // Remediate
	ReasonStateBlocked            Reason = "device.state_blocked"            // Deny
	ReasonUserMismatch            Reason = "device.user_mismatch"            // Deny

	ReasonLoginRequired Reason = "user.login_required" // Login
	ReasonUserUnknown   Reason = "user.unknown"        // Deny
	ReasonNotInGroup    Reason = "user.not_in_group"   // Deny
	ReasonRiskTooHigh   Reason = "user.risk_too_high"  // Deny
	ReasonRiskUnknown   Reason = "user.risk_unknown"   // Deny

	ReasonSessionRevoked Reason = "session.revoked"         // Login
	ReasonMFARequired    Reason = "session.mfa_required"    // StepUp
	ReasonReauthRequired Reason = "session.reauth_required" // StepUp

	ReasonExpressionDenied Reason = "policy.expression_denied" // Deny
	ReasonExpressionError  Reason = "policy.expression_error"  // Deny

	ReasonRouteNotFound  Reason = "route.not_found" // gateway (and Decide with a nil policy)
	ReasonIdPUnavailable Reason = "idp.unavailable" // gateway
	// ReasonAdminClosed: an operator closed a live request from the admin
	// console (rule "admin.console").
	ReasonAdminClosed Reason = "admin.closed" // gateway
)

// reasonMessages holds one line per reason, addressed to the person who
// was denied: what is wrong, in words a deny page can show.
var reasonMessages = map[Reason]string{
	ReasonAllowed: "Access allowed.",

	ReasonCertificateMissing:      "This resource needs a device certificate, and none was presented.",
	ReasonCertificateInvalid:      "The device certificate is not accepted for this resource.",
	ReasonCertificateRevoked:      "The device certificate has been revoked.",
	ReasonCertificateUnverifiable: "Whether the device certificate was revoked cannot be checked right now; try again shortly.",
	ReasonDeviceUnknown:           "Nothing is known about this device's health yet; make sure it is enrolled.",
	ReasonPostureStale:            "This device has not reported its health recently; let it check in and retry.",
	ReasonNotManaged:              "This device is not managed by the organization.",
	ReasonNotCompliant:            "This device does not comply with the organization's policy.",
	ReasonComplianceUnknown:       "This device's compliance has not been reported.",
	ReasonThreatTooHigh:           "A security threat was detected on this device.",
	ReasonThreatUnknown:           "This device's threat level has not been reported.",
	ReasonStateBlocked:            "This device is quarantined, retired, wiped or reported lost.",
	ReasonUserMismatch:            "The signed-in user is not the user this device belongs to.",

	ReasonLoginRequired: "Sign in to reach this resource.",
	ReasonUserUnknown:   "The sign-in did not identify a user.",
	ReasonNotInGroup:    "Your account is not in a group allowed to reach this resource.",
	ReasonRiskTooHigh:   "Your account's risk level is too high for this resource.",
	ReasonRiskUnknown:   "Your account's risk level is not known.",

	ReasonSessionRevoked: "Your session has been revoked; sign in again.",
	ReasonMFARequired:    "This resource needs a stronger sign-in (multi-factor authentication).",
	ReasonReauthRequired: "Your sign-in is too old for this resource; sign in again.",

	ReasonExpressionDenied: "The resource's access rule does not allow this request.",
	ReasonExpressionError:  "The resource's access rule could not be evaluated.",

	ReasonRouteNotFound:  "No resource is configured for this address.",
	ReasonIdPUnavailable: "The sign-in service is unavailable; try again later.",
	ReasonAdminClosed:    "An administrator closed this connection.",
}

// Message returns a one-line human explanation of r, for deny pages and
// problem documents. An unknown reason gets a generic message.
func (r Reason) Message() string {
	if m, ok := reasonMessages[r]; ok {
		return m
	}
	return "Access denied."
}

// Reasons returns every reason code this package defines, in a stable order
// (the order of the documentation). The caller owns the slice.
func Reasons() []Reason {
	return []Reason{
		ReasonAllowed,
		ReasonCertificateMissing, ReasonCertificateInvalid, ReasonCertificateRevoked, ReasonCertificateUnverifiable,
		ReasonDeviceUnknown, ReasonPostureStale, ReasonStateBlocked, ReasonNotManaged,
		ReasonComplianceUnknown, ReasonNotCompliant, ReasonThreatUnknown, ReasonThreatTooHigh,
		ReasonUserMismatch,
		ReasonLoginRequired, ReasonUserUnknown, ReasonNotInGroup, ReasonRiskUnknown, ReasonRiskTooHigh,
		ReasonSessionRevoked, ReasonMFARequired, ReasonReauthRequired,
		ReasonExpressionDenied, ReasonExpressionError,
		ReasonRouteNotFound, ReasonIdPUnavailable, ReasonAdminClosed,
	}
}

package enforcement

import (
	"strings"

	"portcullis/posture"
)

// Rules name the policy key that decided, for [Decision.Rule].
const (
	ruleCertificate  = "policy.device.certificate"
	ruleCAs          = "policy.device.cas"
	ruleAllowUnknown = "policy.device.allow_unknown"
	ruleMaxAge       = "policy.device.max_age"
	ruleState        = "policy.device"
	ruleManaged      = "policy.device.managed"
	ruleCompliant    = "policy.device.compliant"
	ruleMaxThreat    = "policy.device.max_threat"
	ruleBindUser     = "policy.device.bind_user"
	ruleGroups       = "policy.user.groups"
	ruleMFA          = "policy.user.mfa"
	ruleACR          = "policy.user.acr"
	ruleMaxAuthAge   = "policy.user.max_auth_age"
	ruleMaxRisk      = "policy.user.max_risk"
	ruleWhen         = "policy.when"

	ruleRevokedDevice  = "revocation.device"
	ruleRevokedSession = "revocation.session"
	ruleRevokedUser    = "revocation.user"
)

// mfaMethods are the amr values (RFC 8176) that count as a multi-factor
// sign-in.
var mfaMethods = [...]string{"mfa", "otp", "hwk", "swk", "fpt", "face"}

var emptyInput Input

// Decide returns the decision of policy p over the input in. It is pure:
// no I/O, no clock (in.Now is the time), no globals, and no allocation
// unless p has a CEL expression. It never modifies in.
//
// Checks run in a fixed order and the first failure decides: the device
// certificate (its status, then the device's revocation), the device's
// posture (every record of every source must pass), the user (a revoked
// session or user first, whatever the policy asks of users: a revoked
// credential is refused wherever it is presented), and last the CEL
// expression. Anything absent that a check needs fails it, unless the
// policy explicitly allows it. With `certificate: off` the certificate and
// the device are not looked at at all. A nil policy denies with
// [ReasonRouteNotFound]; a nil input is an empty one.
func Decide(p *Policy, in *Input) Decision {
	if p == nil {
		return Decision{Verdict: Deny, Reason: ReasonRouteNotFound}
	}
	if in == nil {
		in = &emptyInput
	}
	if d, ok := decideDevice(p, in); !ok {
		return d
	}
	if d, ok := decideUser(p, in); !ok {
		return d
	}
	if p.prog != nil {
		ok, err := evalExpr(p, in)
		switch {
		case err != nil:
			return Decision{Verdict: Deny, Reason: ReasonExpressionError, Rule: ruleWhen}
		case !ok:
			return Decision{Verdict: Deny, Reason: ReasonExpressionDenied, Rule: ruleWhen}
		}
	}
	return Decision{Verdict: Allow, Reason: ReasonAllowed}
}

// decideDevice runs the certificate and posture checks; ok is false with
// the deciding failure.
func decideDevice(p *Policy, in *Input) (Decision, bool) {
	if p.cert == CertOff {
		return Decision{}, true
	}
	switch in.Cert {
	case CertInvalid:
		return Decision{Verdict: Deny, Reason: ReasonCertificateInvalid, Rule: ruleCertificate}, false
	case CertRevoked:
		return Decision{Verdict: Deny, Reason: ReasonCertificateRevoked, Rule: ruleCertificate}, false
	case CertUnverifiable:
		return Decision{Verdict: Deny, Reason: ReasonCertificateUnverifiable, Rule: ruleCertificate}, false
	}
	dev := in.Device
	if dev == nil {
		if p.cert == CertRequired {
			return Decision{Verdict: Login, Reason: ReasonCertificateMissing, Rule: ruleCertificate}, false
		}
		return Decision{}, true // optional: no certificate, no device checks
	}
	if dev.DeviceID == "" || len(p.cas) > 0 && !contains(p.cas, dev.CA) {
		return Decision{Verdict: Deny, Reason: ReasonCertificateInvalid, Rule: ruleCAs}, false
	}
	if in.Revoked&RevokedDevice != 0 {
		return Decision{Verdict: Deny, Reason: ReasonCertificateRevoked, Rule: ruleRevokedDevice}, false
	}

	rs := deviceRecords(in)
	if p.posture {
		if len(rs) == 0 {
			if p.allowUnknown {
				return Decision{}, true
			}
			return Decision{Verdict: Remediate, Reason: ReasonDeviceUnknown, Rule: ruleAllowUnknown}, false
		}
		if !p.allowStale {
			for i := range rs {
				if in.Now.Sub(rs[i].ObservedAt) > p.maxAge {
					return Decision{Verdict: Remediate, Reason: ReasonPostureStale, Rule: ruleMaxAge}, false
				}
			}
		}
	}
	// A quarantined, retired, wiped or lost device is refused whenever a
	// record says so, however old, even if no posture check is enabled.
	for i := range rs {
		if s := rs[i].State; s != posture.StateActive && s != posture.StateUnreported {
			return Decision{Verdict: Deny, Reason: ReasonStateBlocked, Rule: ruleState}, false
		}
	}
	if !p.posture {
		return Decision{}, true
	}
	if p.managed {
		for i := range rs {
			if !rs[i].Managed {
				return Decision{Verdict: Remediate, Reason: ReasonNotManaged, Rule: ruleManaged}, false
			}
		}
	}
	if p.compliant {
		for i := range rs {
			switch r := &rs[i]; r.Compliance {
			case posture.Compliant:
			case posture.NotCompliant:
				if p.allowGrace && !r.GraceUntil.IsZero() && in.Now.Before(r.GraceUntil) {
					continue
				}
				return Decision{Verdict: Remediate, Reason: ReasonNotCompliant, Rule: ruleCompliant}, false
			default:
				return Decision{Verdict: Remediate, Reason: ReasonComplianceUnknown, Rule: ruleCompliant}, false
			}
		}
	}
	if p.maxThreat != posture.ThreatUnknown {
		for i := range rs {
			switch t := rs[i].Threat; {
			case t == posture.ThreatUnknown:
				return Decision{Verdict: Remediate, Reason: ReasonThreatUnknown, Rule: ruleMaxThreat}, false
			case t > p.maxThreat:
				return Decision{Verdict: Remediate, Reason: ReasonThreatTooHigh, Rule: ruleMaxThreat}, false
			}
		}
	}
	return Decision{}, true
}

// deviceRecords returns the posture records of the input's device: none
// without a certificate, and none when the snapshot belongs to another
// device (a gateway bug must not lend one device another's health).
func deviceRecords(in *Input) []posture.Posture {
	dev, pos := in.Device, in.Posture
	if dev == nil || pos == nil || pos.Key.CA != dev.CA || pos.Key.ID != dev.DeviceID {
		return nil
	}
	return pos.Records
}

// decideUser runs the user checks; ok is false with the deciding failure.
func decideUser(p *Policy, in *Input) (Decision, bool) {
	sub := in.Subject
	if sub != nil {
		switch {
		case in.Revoked&RevokedSession != 0:
			return Decision{Verdict: Login, Reason: ReasonSessionRevoked, Rule: ruleRevokedSession}, false
		case in.Revoked&RevokedUser != 0:
			return Decision{Verdict: Login, Reason: ReasonSessionRevoked, Rule: ruleRevokedUser}, false
		}
	}
	if !p.needUser {
		return Decision{}, true
	}
	if sub == nil {
		return Decision{Verdict: Login, Reason: ReasonLoginRequired, Rule: p.loginRule}, false
	}
	if sub.UserID == "" {
		return Decision{Verdict: Deny, Reason: ReasonUserUnknown, Rule: p.loginRule}, false
	}
	// bind_user only has a certificate to bind to when one was presented:
	// with an optional certificate and none, the device checks were
	// skipped too.
	if p.bindUser && in.Device != nil && !strings.EqualFold(sub.UserID, in.Device.User) {
		return Decision{Verdict: Deny, Reason: ReasonUserMismatch, Rule: ruleBindUser}, false
	}
	if len(p.groups) > 0 && !containsAny(p.groups, sub.Groups) {
		return Decision{Verdict: Deny, Reason: ReasonNotInGroup, Rule: ruleGroups}, false
	}
	if p.mfa && !containsAny(mfaMethods[:], sub.AMR) {
		return Decision{Verdict: StepUp, Reason: ReasonMFARequired, Rule: ruleMFA}, false
	}
	if len(p.acr) > 0 && !contains(p.acr, sub.ACR) {
		return Decision{Verdict: StepUp, Reason: ReasonMFARequired, Rule: ruleACR}, false
	}
	if p.maxAuthAge > 0 && (sub.AuthTime.IsZero() || in.Now.Sub(sub.AuthTime) > p.maxAuthAge) {
		return Decision{Verdict: StepUp, Reason: ReasonReauthRequired, Rule: ruleMaxAuthAge}, false
	}
	if p.maxRisk != posture.RiskUnknown {
		level := posture.RiskUnknown
		// A risk record about someone else is no record at all.
		if r := in.Risk; r != nil && (r.User == "" || strings.EqualFold(r.User, sub.UserID)) {
			level = r.Level
		}
		switch {
		case level == posture.RiskUnknown:
			if !p.unknownRisk {
				return Decision{Verdict: Deny, Reason: ReasonRiskUnknown, Rule: ruleMaxRisk}, false
			}
		case level > p.maxRisk:
			return Decision{Verdict: Deny, Reason: ReasonRiskTooHigh, Rule: ruleMaxRisk}, false
		}
	}
	return Decision{}, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// containsAny reports whether any of have is in want.
func containsAny(want, have []string) bool {
	for _, h := range have {
		if contains(want, h) {
			return true
		}
	}
	return false
}

package enforcement

import (
	"testing"
	"time"

	"portcullis/posture"
)

// decideTests covers every reason code Decide can return; TestDecideReasons
// checks that it does.
var decideTests = []struct {
	name   string
	policy string // YAML
	in     *Input
	want   Verdict
	reason Reason
	rule   string
}{
	// Allowed.
	{"default policy, healthy device", `{}`, goodInput(), Allow, ReasonAllowed, ""},
	{"everything checked and passing",
		`{login: okta, device: {cas: [ivanti], max_threat: low, bind_user: true},
		  user: {groups: [eng], max_risk: medium, mfa: true, acr: [phr], max_auth_age: 2h},
		  when: 'request.method == "GET"'}`,
		goodInput(), Allow, ReasonAllowed, ""},
	{"optional certificate, none presented", `{device: {certificate: optional}}`,
		goodInput(func(in *Input) { in.Device, in.Posture = nil, nil }), Allow, ReasonAllowed, ""},
	{"certificate off ignores the device", `{device: {certificate: off}}`,
		goodInput(func(in *Input) { in.Device, in.Posture = nil, nil }), Allow, ReasonAllowed, ""},
	{"nil input with certificate off", `{device: {certificate: off}}`, nil, Allow, ReasonAllowed, ""},

	// Certificate.
	{"certificate missing", `{}`,
		goodInput(func(in *Input) { in.Device = nil }), Login, ReasonCertificateMissing, "policy.device.certificate"},
	{"nil input", `{}`, nil, Login, ReasonCertificateMissing, "policy.device.certificate"},
	{"certificate from another CA", `{device: {cas: [intune]}}`,
		goodInput(), Deny, ReasonCertificateInvalid, "policy.device.cas"},
	{"optional certificate from another CA", `{device: {certificate: optional, cas: [intune]}}`,
		goodInput(), Deny, ReasonCertificateInvalid, "policy.device.cas"},
	{"certificate without a device id", `{}`,
		goodInput(func(in *Input) { in.Device.DeviceID = "" }), Deny, ReasonCertificateInvalid, "policy.device.cas"},

	// Certificate status and device revocation.
	{"certificate presented and invalid", `{}`,
		goodInput(func(in *Input) { in.Cert, in.Device, in.Posture = CertInvalid, nil, nil }), Deny, ReasonCertificateInvalid, "policy.device.certificate"},
	{"optional certificate presented and invalid", `{device: {certificate: optional}}`,
		goodInput(func(in *Input) { in.Cert, in.Device, in.Posture = CertInvalid, nil, nil }), Deny, ReasonCertificateInvalid, "policy.device.certificate"},
	{"certificate revoked by a CRL", `{device: {certificate: optional}}`,
		goodInput(func(in *Input) { in.Cert, in.Device, in.Posture = CertRevoked, nil, nil }), Deny, ReasonCertificateRevoked, "policy.device.certificate"},
	{"certificate status unverifiable", `{}`,
		goodInput(func(in *Input) { in.Cert, in.Device, in.Posture = CertUnverifiable, nil, nil }), Deny, ReasonCertificateUnverifiable, "policy.device.certificate"},
	{"certificate off ignores an invalid certificate", `{device: {certificate: off}}`,
		goodInput(func(in *Input) { in.Cert, in.Device, in.Posture = CertInvalid, nil, nil }), Allow, ReasonAllowed, ""},
	{"device revoked", `{}`,
		goodInput(func(in *Input) { in.Revoked = RevokedDevice }), Deny, ReasonCertificateRevoked, "revocation.device"},
	{"device revoked, optional certificate", `{device: {certificate: optional}}`,
		goodInput(func(in *Input) { in.Revoked = RevokedDevice }), Deny, ReasonCertificateRevoked, "revocation.device"},
	{"device revoked comes before posture", `{}`,
		goodInput(func(in *Input) { in.Revoked, in.Posture = RevokedDevice, nil }), Deny, ReasonCertificateRevoked, "revocation.device"},
	{"device revoked, certificate off", `{device: {certificate: off}}`,
		goodInput(func(in *Input) { in.Revoked = RevokedDevice }), Allow, ReasonAllowed, ""},

	// Session and user revocation.
	{"session revoked", `{login: okta}`,
		goodInput(func(in *Input) { in.Revoked = RevokedSession }), Login, ReasonSessionRevoked, "revocation.session"},
	{"user revoked", `{login: okta}`,
		goodInput(func(in *Input) { in.Revoked = RevokedUser }), Login, ReasonSessionRevoked, "revocation.user"},
	{"certificate user revoked, no user checks", `{login: none}`,
		goodInput(func(in *Input) { in.Revoked = RevokedUser }), Login, ReasonSessionRevoked, "revocation.user"},
	{"user revoked, no subject", `{login: none}`,
		goodInput(func(in *Input) { in.Revoked, in.Subject = RevokedUser, nil }), Allow, ReasonAllowed, ""},
	{"device and user revoked: the device decides", `{login: okta}`,
		goodInput(func(in *Input) { in.Revoked = RevokedDevice | RevokedUser }), Deny, ReasonCertificateRevoked, "revocation.device"},

	// Posture presence and age.
	{"no posture record", `{}`,
		goodInput(func(in *Input) { in.Posture = nil }), Remediate, ReasonDeviceUnknown, "policy.device.allow_unknown"},
	{"posture without records", `{}`,
		goodInput(func(in *Input) { in.Posture.Records = nil }), Remediate, ReasonDeviceUnknown, "policy.device.allow_unknown"},
	{"posture of another device", `{}`,
		goodInput(func(in *Input) { in.Posture.Key.ID = "d2" }), Remediate, ReasonDeviceUnknown, "policy.device.allow_unknown"},
	{"posture of another CA", `{}`,
		goodInput(func(in *Input) { in.Posture.Key.CA = "intune" }), Remediate, ReasonDeviceUnknown, "policy.device.allow_unknown"},
	{"no posture record, allow_unknown", `{device: {allow_unknown: true}}`,
		goodInput(func(in *Input) { in.Posture = nil }), Allow, ReasonAllowed, ""},
	{"stale posture (global max age)", `{}`,
		goodInput(record(func(r *posture.Posture) { r.ObservedAt = testNow.Add(-16 * time.Minute) })),
		Remediate, ReasonPostureStale, "policy.device.max_age"},
	{"stale posture (resource max age)", `{device: {max_age: 5m}}`,
		goodInput(record(func(r *posture.Posture) { r.ObservedAt = testNow.Add(-6 * time.Minute) })),
		Remediate, ReasonPostureStale, "policy.device.max_age"},
	{"posture exactly max age old", `{device: {max_age: 5m}}`,
		goodInput(record(func(r *posture.Posture) { r.ObservedAt = testNow.Add(-5 * time.Minute) })),
		Allow, ReasonAllowed, ""},
	{"one of two sources stale", `{}`,
		goodInput(addRecord(func(r *posture.Posture) { r.ObservedAt = testNow.Add(-time.Hour) })),
		Remediate, ReasonPostureStale, "policy.device.max_age"},
	{"stale posture, allow_stale", `{device: {allow_stale: true}}`,
		goodInput(record(func(r *posture.Posture) { r.ObservedAt = testNow.Add(-48 * time.Hour) })),
		Allow, ReasonAllowed, ""},
	{"stale comes before not compliant", `{}`,
		goodInput(record(func(r *posture.Posture) {
			r.ObservedAt, r.Compliance = testNow.Add(-time.Hour), posture.NotCompliant
		})),
		Remediate, ReasonPostureStale, "policy.device.max_age"},

	// Device state.
	{"quarantined", `{}`,
		goodInput(record(func(r *posture.Posture) { r.State = posture.StateQuarantined })), Deny, ReasonStateBlocked, "policy.device"},
	{"lost, reported by a second source", `{}`,
		goodInput(addRecord(func(r *posture.Posture) { r.State = posture.StateLost })), Deny, ReasonStateBlocked, "policy.device"},
	{"wiped, with no posture check enabled", `{device: {managed: false, compliant: false}}`,
		goodInput(record(func(r *posture.Posture) { r.State = posture.StateWiped })), Deny, ReasonStateBlocked, "policy.device"},
	{"retired and stale, allow_stale", `{device: {allow_stale: true}}`,
		goodInput(record(func(r *posture.Posture) {
			r.State, r.ObservedAt = posture.StateRetired, testNow.Add(-48*time.Hour)
		})), Deny, ReasonStateBlocked, "policy.device"},
	{"state unreported", `{}`,
		goodInput(record(func(r *posture.Posture) { r.State = posture.StateUnreported })), Allow, ReasonAllowed, ""},

	// Managed, compliant, threat.
	{"not managed", `{}`,
		goodInput(record(func(r *posture.Posture) { r.Managed = false })), Remediate, ReasonNotManaged, "policy.device.managed"},
	{"not managed, managed: false", `{device: {managed: false}}`,
		goodInput(record(func(r *posture.Posture) { r.Managed = false })), Allow, ReasonAllowed, ""},
	{"compliance unknown", `{}`,
		goodInput(record(func(r *posture.Posture) { r.Compliance = posture.ComplianceUnknown })),
		Remediate, ReasonComplianceUnknown, "policy.device.compliant"},
	{"second source leaves compliance unknown", `{}`,
		goodInput(addRecord(func(r *posture.Posture) { r.Compliance = posture.ComplianceUnknown })),
		Remediate, ReasonComplianceUnknown, "policy.device.compliant"},
	{"not compliant", `{}`,
		goodInput(record(func(r *posture.Posture) { r.Compliance = posture.NotCompliant })),
		Remediate, ReasonNotCompliant, "policy.device.compliant"},
	{"not compliant, compliant: false", `{device: {compliant: false}}`,
		goodInput(record(func(r *posture.Posture) { r.Compliance = posture.NotCompliant })), Allow, ReasonAllowed, ""},
	{"not compliant in grace, allow_grace", `{device: {allow_grace: true}}`,
		goodInput(record(func(r *posture.Posture) {
			r.Compliance, r.GraceUntil = posture.NotCompliant, testNow.Add(time.Hour)
		})), Allow, ReasonAllowed, ""},
	{"not compliant in grace, no allow_grace", `{}`,
		goodInput(record(func(r *posture.Posture) {
			r.Compliance, r.GraceUntil = posture.NotCompliant, testNow.Add(time.Hour)
		})), Remediate, ReasonNotCompliant, "policy.device.compliant"},
	{"not compliant after grace, allow_grace", `{device: {allow_grace: true}}`,
		goodInput(record(func(r *posture.Posture) {
			r.Compliance, r.GraceUntil = posture.NotCompliant, testNow
		})), Remediate, ReasonNotCompliant, "policy.device.compliant"},
	{"not compliant without grace, allow_grace", `{device: {allow_grace: true}}`,
		goodInput(record(func(r *posture.Posture) { r.Compliance = posture.NotCompliant })),
		Remediate, ReasonNotCompliant, "policy.device.compliant"},
	{"threat unknown", `{device: {max_threat: low}}`,
		goodInput(record(func(r *posture.Posture) { r.Threat = posture.ThreatUnknown })),
		Remediate, ReasonThreatUnknown, "policy.device.max_threat"},
	{"threat unknown, not checked", `{}`,
		goodInput(record(func(r *posture.Posture) { r.Threat = posture.ThreatUnknown })), Allow, ReasonAllowed, ""},
	{"threat too high", `{device: {max_threat: low}}`,
		goodInput(addRecord(func(r *posture.Posture) { r.Threat = posture.ThreatMedium })),
		Remediate, ReasonThreatTooHigh, "policy.device.max_threat"},
	{"threat at the limit", `{device: {max_threat: medium}}`,
		goodInput(record(func(r *posture.Posture) { r.Threat = posture.ThreatMedium })), Allow, ReasonAllowed, ""},
	{"critical threat, max_threat high", `{device: {max_threat: high}}`,
		goodInput(record(func(r *posture.Posture) { r.Threat = posture.ThreatCritical })),
		Remediate, ReasonThreatTooHigh, "policy.device.max_threat"},
	{"only max_threat checked", `{device: {managed: false, compliant: false, max_threat: none}}`,
		goodInput(record(func(r *posture.Posture) { r.Managed, r.Compliance = false, posture.NotCompliant })),
		Allow, ReasonAllowed, ""},
	{"optional certificate presented, not compliant", `{device: {certificate: optional}}`,
		goodInput(record(func(r *posture.Posture) { r.Compliance = posture.NotCompliant })),
		Remediate, ReasonNotCompliant, "policy.device.compliant"},

	// User.
	{"login required", `{login: okta}`,
		goodInput(func(in *Input) { in.Subject = nil }), Login, ReasonLoginRequired, "policy.login"},
	{"login required by groups", `{user: {groups: [eng]}}`,
		goodInput(func(in *Input) { in.Subject = nil }), Login, ReasonLoginRequired, "policy.user.groups"},
	{"login required by max_auth_age", `{login: none, user: {max_auth_age: 1h}}`,
		goodInput(func(in *Input) { in.Subject = nil }), Login, ReasonLoginRequired, "policy.user.max_auth_age"},
	{"no user needed", `{}`,
		goodInput(func(in *Input) { in.Subject, in.Risk = nil, nil }), Allow, ReasonAllowed, ""},
	{"certificate checked before login", `{login: okta}`,
		goodInput(func(in *Input) { in.Subject, in.Device = nil, nil }), Login, ReasonCertificateMissing, "policy.device.certificate"},
	{"subject without a user id", `{login: saml:corp}`,
		goodInput(subject(func(s *Subject) { s.UserID = "" })), Deny, ReasonUserUnknown, "policy.login"},
	{"user mismatch", `{login: okta, device: {bind_user: true}}`,
		goodInput(subject(func(s *Subject) { s.UserID = "eve@acme.example" })), Deny, ReasonUserMismatch, "policy.device.bind_user"},
	{"user match ignores case", `{login: okta, device: {bind_user: true}}`,
		goodInput(func(in *Input) { in.Device.User = "J.Doe@ACME.example" }), Allow, ReasonAllowed, ""},
	{"certificate without a user, bind_user", `{login: okta, device: {bind_user: true}}`,
		goodInput(func(in *Input) { in.Device.User = "" }), Deny, ReasonUserMismatch, "policy.device.bind_user"},
	{"bind_user, optional certificate absent", `{login: okta, device: {certificate: optional, bind_user: true}}`,
		goodInput(func(in *Input) { in.Device, in.Posture = nil, nil }), Allow, ReasonAllowed, ""},
	{"not in group", `{user: {groups: [admins, ops]}}`,
		goodInput(), Deny, ReasonNotInGroup, "policy.user.groups"},
	{"no groups at all", `{user: {groups: [eng]}}`,
		goodInput(subject(func(s *Subject) { s.Groups = nil })), Deny, ReasonNotInGroup, "policy.user.groups"},
	{"mfa required", `{user: {mfa: true}}`,
		goodInput(subject(func(s *Subject) { s.AMR = []string{"pwd"} })), StepUp, ReasonMFARequired, "policy.user.mfa"},
	{"mfa by hardware key", `{user: {mfa: true}}`,
		goodInput(subject(func(s *Subject) { s.AMR = []string{"hwk"} })), Allow, ReasonAllowed, ""},
	{"acr not accepted", `{user: {acr: [urn:okta:loa:2fa:any]}}`,
		goodInput(), StepUp, ReasonMFARequired, "policy.user.acr"},
	{"reauth required", `{user: {max_auth_age: 30m}}`,
		goodInput(), StepUp, ReasonReauthRequired, "policy.user.max_auth_age"},
	{"reauth required, no auth time", `{user: {max_auth_age: 30m}}`,
		goodInput(subject(func(s *Subject) { s.AuthTime = time.Time{} })), StepUp, ReasonReauthRequired, "policy.user.max_auth_age"},
	{"risk record missing", `{user: {max_risk: medium}}`,
		goodInput(func(in *Input) { in.Risk = nil }), Deny, ReasonRiskUnknown, "policy.user.max_risk"},
	{"risk unreported", `{user: {max_risk: medium}}`,
		goodInput(func(in *Input) { in.Risk.Level = posture.RiskUnknown }), Deny, ReasonRiskUnknown, "policy.user.max_risk"},
	{"risk of another user", `{user: {max_risk: medium}}`,
		goodInput(func(in *Input) { in.Risk.User = "eve@acme.example" }), Deny, ReasonRiskUnknown, "policy.user.max_risk"},
	{"risk record missing, unknown_risk allow", `{user: {max_risk: medium, unknown_risk: allow}}`,
		goodInput(func(in *Input) { in.Risk = nil }), Allow, ReasonAllowed, ""},
	{"risk too high", `{user: {max_risk: low}}`,
		goodInput(func(in *Input) { in.Risk.Level = posture.RiskMedium }), Deny, ReasonRiskTooHigh, "policy.user.max_risk"},
	{"high risk, unknown_risk allow", `{user: {max_risk: medium, unknown_risk: allow}}`,
		goodInput(func(in *Input) { in.Risk.Level = posture.RiskHigh }), Deny, ReasonRiskTooHigh, "policy.user.max_risk"},
	{"device-certificate subject with max_risk", `{user: {max_risk: low}}`,
		goodInput(subject(func(s *Subject) { s.IdP, s.AMR, s.ACR = "device-certificate", nil, "" })), Allow, ReasonAllowed, ""},

	// Expression.
	{"expression true", `{when: 'request.method in ["GET", "HEAD"]'}`, goodInput(), Allow, ReasonAllowed, ""},
	{"expression false", `{when: 'request.method in ["GET", "HEAD"]'}`,
		goodInput(func(in *Input) { in.Request.Method = "POST" }), Deny, ReasonExpressionDenied, "policy.when"},
	{"expression runtime error", `{when: 'user.groups[5] == "x"'}`,
		goodInput(), Deny, ReasonExpressionError, "policy.when"},
	{"expression after user checks", `{user: {groups: [admins]}, when: 'false'}`,
		goodInput(), Deny, ReasonNotInGroup, "policy.user.groups"},
}

func TestDecide(t *testing.T) {
	for _, tt := range decideTests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.policy)
			got := Decide(p, tt.in)
			if got.Verdict != tt.want || got.Reason != tt.reason || got.Rule != tt.rule {
				t.Errorf("Decide = %v/%s/%q, want %v/%s/%q", got.Verdict, got.Reason, got.Rule, tt.want, tt.reason, tt.rule)
			}
		})
	}
}

// gatewayReasons are produced by the gateway, never by Decide.
var gatewayReasons = map[Reason]bool{
	ReasonRouteNotFound:  true,
	ReasonIdPUnavailable: true,
	ReasonAdminClosed:    true,
}

// TestDecideReasons fails when a reason Decide can return has no case in
// decideTests, so a new reason cannot ship untested.
func TestDecideReasons(t *testing.T) {
	seen := map[Reason]bool{}
	for _, tt := range decideTests {
		seen[tt.reason] = true
	}
	for _, r := range Reasons() {
		if !seen[r] && !gatewayReasons[r] {
			t.Errorf("reason %s: no case in decideTests", r)
		}
	}
}

func TestDecideNilPolicy(t *testing.T) {
	got := Decide(nil, goodInput())
	if got.Verdict != Deny || got.Reason != ReasonRouteNotFound {
		t.Errorf("Decide(nil) = %v/%s, want deny/%s", got.Verdict, got.Reason, ReasonRouteNotFound)
	}
}

// TestDecideDoesNotModifyInput runs every case twice on the same input.
func TestDecideDoesNotModifyInput(t *testing.T) {
	for _, tt := range decideTests {
		p := mustCompile(t, tt.policy)
		first := Decide(p, tt.in)
		if again := Decide(p, tt.in); again != first {
			t.Errorf("%s: second Decide = %+v, first %+v", tt.name, again, first)
		}
	}
}

func TestDecideAllocs(t *testing.T) {
	for _, tt := range decideTests {
		p := mustCompile(t, tt.policy)
		if p.Expression() != "" {
			continue
		}
		if n := testing.AllocsPerRun(100, func() { Decide(p, tt.in) }); n != 0 {
			t.Errorf("%s: Decide allocates %v times, want 0", tt.name, n)
		}
	}
}

func TestExpressionVariables(t *testing.T) {
	tests := []struct {
		name string
		when string
		in   *Input
	}{
		{"request", `request.method == "GET" && request.host == "wiki.example.com" &&
			request.path == "/page" && request.protocol == "HTTP/2.0" && request.remote_ip == "192.0.2.7"`, goodInput()},
		{"user", `user.id == "j.doe@acme.example" && user.email.endsWith("@acme.example") &&
			"eng" in user.groups && user.idp == "okta" && user.acr == "phr" && user.amr == ["pwd", "mfa"]`, goodInput()},
		{"device", `device.present && device.id == "d1" && device.ca == "ivanti" &&
			device.user == "j.doe@acme.example" && device.managed && device.compliant &&
			device.threat == "none" && device.platform == "ios" && device.os_version == "17.6.1"`, goodInput()},
		{"worst threat of all sources", `device.threat == "high"`,
			goodInput(addRecord(func(r *posture.Posture) { r.Threat = posture.ThreatHigh }))},
		{"one source leaves threat unreported", `device.threat == ""`,
			goodInput(addRecord(func(r *posture.Posture) { r.Threat = posture.ThreatUnknown }))},
		{"one source not compliant", `!device.compliant && device.managed`,
			goodInput(addRecord(func(r *posture.Posture) { r.Compliance = posture.NotCompliant }))},
		{"risk and now", `risk == "low" && now == timestamp("2026-09-14T08:20:00Z")`, goodInput()},
		{"absent everything", `user.id == "" && size(user.groups) == 0 && size(user.amr) == 0 &&
			!device.present && device.id == "" && !device.managed && !device.compliant &&
			device.threat == "" && device.platform == "" && risk == ""`,
			goodInput(func(in *Input) { in.Subject, in.Device, in.Posture, in.Risk = nil, nil, nil, nil })},
		{"posture of another device is not shown", `device.present && !device.managed && device.platform == ""`,
			goodInput(func(in *Input) { in.Posture.Key.ID = "d2" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := PolicyConfig{
				Device: DeviceConfig{Certificate: CertOff},
				When:   tt.when,
			}
			p, err := Compile(cfg, Defaults{})
			if err != nil {
				t.Fatal(err)
			}
			if got := Decide(p, tt.in); got.Verdict != Allow {
				t.Errorf("Decide = %v/%s, want allow", got.Verdict, got.Reason)
			}
		})
	}
}

// TestDecideConcurrent shares one compiled policy between goroutines; run
// with -race.
func TestDecideConcurrent(t *testing.T) {
	p := mustCompile(t, `{login: okta, user: {groups: [eng]}, when: '"eng" in user.groups && device.managed'}`)
	in := goodInput()
	done := make(chan Decision)
	for range 4 {
		go func() {
			var d Decision
			for range 100 {
				d = Decide(p, in)
			}
			done <- d
		}()
	}
	for range 4 {
		if d := <-done; d.Verdict != Allow {
			t.Errorf("Decide = %+v, want allow", d)
		}
	}
}

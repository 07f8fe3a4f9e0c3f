package enforcement

import (
	"slices"
	"testing"
	"time"

	"portcullis/certs"
	"portcullis/internal/conf"
	"portcullis/posture"
)

var testNow = time.Date(2026, 9, 14, 8, 20, 0, 0, time.UTC)

// goodRecord is a posture record that passes every device check.
func goodRecord(source string) posture.Posture {
	return posture.Posture{
		Source:     source,
		Managed:    true,
		Compliance: posture.Compliant,
		Threat:     posture.ThreatNone,
		State:      posture.StateActive,
		Platform:   "ios",
		OSVersion:  "17.6.1",
		ObservedAt: testNow.Add(-time.Minute),
	}
}

// goodInput returns a fresh input that every policy in the tests allows,
// changed by mods.
func goodInput(mods ...func(*Input)) *Input {
	in := &Input{
		Now: testNow,
		Request: Request{
			Method: "GET", Host: "wiki.example.com", Path: "/page",
			Protocol: "HTTP/2.0", RemoteIP: "192.0.2.7",
		},
		Device: &certs.DeviceIdentity{CA: "ivanti", DeviceID: "d1", User: "j.doe@acme.example"},
		Posture: &posture.Device{
			Key:     posture.DeviceKey{CA: "ivanti", ID: "d1"},
			Records: []posture.Posture{goodRecord("uem")},
		},
		Subject: &Subject{
			UserID: "j.doe@acme.example", Email: "j.doe@acme.example",
			Groups: []string{"staff", "eng"}, IdP: "okta",
			AuthTime: testNow.Add(-time.Hour), AMR: []string{"pwd", "mfa"}, ACR: "phr",
			SessionID: "s1",
		},
		Risk: &posture.UserRisk{User: "j.doe@acme.example", Level: posture.RiskLow},
	}
	for _, m := range mods {
		m(in)
	}
	return in
}

// record changes the first posture record.
func record(f func(*posture.Posture)) func(*Input) {
	return func(in *Input) {
		in.Posture.Records = slices.Clone(in.Posture.Records)
		f(&in.Posture.Records[0])
	}
}

// addRecord appends a second source's record, changed by f.
func addRecord(f func(*posture.Posture)) func(*Input) {
	return func(in *Input) {
		r := goodRecord("zimperium")
		f(&r)
		in.Posture.Records = append(slices.Clone(in.Posture.Records), r)
	}
}

func subject(f func(*Subject)) func(*Input) {
	return func(in *Input) {
		s := *in.Subject
		f(&s)
		in.Subject = &s
	}
}

// parsePolicy decodes a policy written as YAML, as the gateway does.
func parsePolicy(t testing.TB, src string) PolicyConfig {
	t.Helper()
	var cfg PolicyConfig
	if _, err := conf.Decode("policy.yaml", []byte(src), &cfg); err != nil {
		t.Fatalf("decoding %q: %v", src, err)
	}
	return cfg
}

// mustCompile decodes and compiles a policy with a 15m global max age.
func mustCompile(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Compile(parsePolicy(t, src), Defaults{MaxPostureAge: 15 * time.Minute})
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return p
}

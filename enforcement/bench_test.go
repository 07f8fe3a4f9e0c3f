package enforcement

import (
	"fmt"
	"testing"
	"time"

	"portcullis/posture"
)

// benchPolicies compiles n policies that vary over every kind of check, as
// a gateway with n resources would hold them. withCEL adds an expression
// to each.
func benchPolicies(b *testing.B, n int, withCEL bool) []*Policy {
	b.Helper()
	threats := []Threat{"", "none", "low", "medium", "high"}
	risks := []Risk{"", "low", "medium", "high"}
	ps := make([]*Policy, n)
	for i := range ps {
		cfg := PolicyConfig{
			Device: DeviceConfig{
				MaxThreat:  threats[i%len(threats)],
				AllowGrace: i%3 == 0,
			},
			User: UserConfig{MaxRisk: risks[i%len(risks)], MFA: i%4 == 0},
		}
		if i%2 == 0 {
			cfg.Login = fmt.Sprintf("idp%d", i%5)
			cfg.Device.BindUser = i%6 == 0
		}
		if i%7 == 0 {
			cfg.Device.CAs = []string{"intune", "ivanti"}
		}
		if i%5 != 0 {
			cfg.User.Groups = []string{fmt.Sprintf("team%d", i%13), "eng"}
		}
		if i%9 == 0 {
			cfg.User.ACR = []string{"phr", "phrh"}
			cfg.User.MaxAuthAge.UnmarshalText([]byte("8h"))
		}
		if withCEL {
			cfg.When = fmt.Sprintf(`request.method in ["GET", "HEAD"] && (request.path.startsWith("/api/%d") || "eng" in user.groups)`, i)
		}
		p, err := Compile(cfg, Defaults{MaxPostureAge: 15 * time.Minute})
		if err != nil {
			b.Fatalf("policy %d: %v", i, err)
		}
		ps[i] = p
	}
	return ps
}

// benchInput is a device and user that pass every policy of benchPolicies,
// so each decision runs every check (the longest path), with two posture
// sources.
func benchInput() *Input {
	return goodInput(addRecord(func(r *posture.Posture) {}))
}

func benchDecide(b *testing.B, withCEL bool) {
	ps := benchPolicies(b, 1000, withCEL)
	in := benchInput()
	for _, p := range ps {
		if d := Decide(p, in); d.Verdict != Allow {
			b.Fatalf("benchmark input not allowed: %+v", d)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Decide(ps[i], in)
		i++
		if i == len(ps) {
			i = 0
		}
	}
}

// BenchmarkDecide decides against 1,000 compiled resources in turn.
func BenchmarkDecide(b *testing.B) { benchDecide(b, false) }

// BenchmarkDecideCEL is BenchmarkDecide with a CEL expression on every
// resource.
func BenchmarkDecideCEL(b *testing.B) { benchDecide(b, true) }

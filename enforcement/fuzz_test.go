package enforcement

import (
	"strings"
	"testing"
)

// FuzzCompile compiles random policies: Compile must never panic, and a
// policy it accepts must decide any input without panicking, and must not
// allow a request without a device certificate it requires.
func FuzzCompile(f *testing.F) {
	f.Add(`request.method in ["GET","HEAD"]`, "okta", "required", "low", "medium", "eng", "10m", true)
	f.Add(`"admins" in user.groups || device.threat == "none"`, "saml:corp", "optional", "none", "high", "", "", false)
	f.Add(`now > timestamp("2026-01-01T00:00:00Z") && risk != "high"`, "none", "off", "", "", "", "", false)
	f.Add(`request.path.matches("^/api/[0-9]+$")`, "", "", "critical", "low", "ops,dev", "1h", true)
	f.Add(`user.groups.all(g, g.startsWith("x"))`, "", "required", "", "", "", "-5m", false)
	f.Add(`1 +`, "two words", "sometimes", "elevated", "severe", " ", "abc", true)
	f.Add(`[1,2,3].map(x, [x, x]).size() == 3`, "idp", "required", "", "", "", "", false)
	f.Fuzz(func(t *testing.T, when, login, cert, threat, risk, groups, maxAge string, flag bool) {
		cfg := PolicyConfig{
			Login: login,
			Device: DeviceConfig{
				AllowGrace:   flag,
				AllowUnknown: flag,
				BindUser:     flag,
			},
			User: UserConfig{MFA: flag},
			When: when,
		}
		// Modes go through their decoders, as from a file; a value they
		// refuse never reaches Compile.
		if cert != "" && cfg.Device.Certificate.UnmarshalText([]byte(cert)) != nil ||
			threat != "" && cfg.Device.MaxThreat.UnmarshalText([]byte(threat)) != nil ||
			risk != "" && cfg.User.MaxRisk.UnmarshalText([]byte(risk)) != nil {
			return
		}
		if groups != "" {
			cfg.User.Groups = strings.Split(groups, ",")
		}
		if err := cfg.Device.MaxAge.UnmarshalText([]byte(maxAge)); err != nil {
			cfg.Device.MaxAge = 0
		}
		p, err := Compile(cfg, Defaults{})
		if err != nil {
			return
		}
		for _, in := range []*Input{nil, {}, goodInput()} {
			d := Decide(p, in)
			noCert := in == nil || in.Device == nil
			if noCert && p.DeviceCertificate() == CertRequired && d.Verdict == Allow {
				t.Fatalf("policy %+v allowed a request without a required certificate", cfg)
			}
		}
	})
}

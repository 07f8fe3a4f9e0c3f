package enforcement

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

// TestDefaults pins one default per key.
func TestDefaults(t *testing.T) {
	boolp := func(b bool) *bool { return &b }
	tests := []struct {
		name  string
		src   string
		check func(*Policy) bool
	}{
		{"login is none", `{}`, func(p *Policy) bool { return p.Login() == LoginNone && !p.NeedsUser() }},
		{"login is kept", `{login: saml:corp}`, func(p *Policy) bool { return p.Login() == "saml:corp" && p.NeedsUser() }},
		{"certificate is required", `{}`, func(p *Policy) bool { return p.DeviceCertificate() == CertRequired }},
		{"certificate optional", `{device: {certificate: optional}}`, func(p *Policy) bool { return p.DeviceCertificate() == CertOptional }},
		{"all CAs", `{}`, func(p *Policy) bool { return len(p.DeviceCAs()) == 0 }},
		{"CAs kept", `{device: {cas: [ivanti, intune]}}`, func(p *Policy) bool {
			return slices.Equal(p.DeviceCAs(), []string{"ivanti", "intune"})
		}},
		{"managed and compliant with a certificate", `{}`, func(p *Policy) bool { return p.managed && p.compliant && p.NeedsPosture() }},
		{"managed and compliant with an optional certificate", `{device: {certificate: optional}}`,
			func(p *Policy) bool { return p.managed && p.compliant }},
		{"no posture checks with certificate off", `{device: {certificate: off}}`,
			func(p *Policy) bool { return !p.managed && !p.compliant && !p.NeedsPosture() }},
		{"explicit managed false", `{device: {managed: false}}`, func(p *Policy) bool { return !p.managed && p.compliant }},
		{"explicit compliant false", `{device: {compliant: false}}`, func(p *Policy) bool { return p.managed && !p.compliant }},
		{"no posture check at all", `{device: {managed: false, compliant: false}}`, func(p *Policy) bool { return !p.NeedsPosture() }},
		{"grace not allowed", `{}`, func(p *Policy) bool { return !p.allowGrace }},
		{"threat not checked", `{}`, func(p *Policy) bool { return p.maxThreat == 0 }},
		{"max age from the global setting", `{}`, func(p *Policy) bool { return p.MaxPostureAge() == 15*time.Minute }},
		{"max age from the resource", `{device: {max_age: 2m}}`, func(p *Policy) bool { return p.MaxPostureAge() == 2*time.Minute }},
		{"unknown and stale not allowed", `{}`, func(p *Policy) bool { return !p.allowUnknown && !p.allowStale }},
		{"user not bound", `{}`, func(p *Policy) bool { return !p.bindUser }},
		{"any group", `{}`, func(p *Policy) bool { return len(p.groups) == 0 }},
		{"risk not checked", `{}`, func(p *Policy) bool { return p.maxRisk == 0 }},
		{"unknown risk denies", `{user: {max_risk: high}}`, func(p *Policy) bool { return !p.unknownRisk }},
		{"no mfa, any acr, no auth age", `{}`, func(p *Policy) bool { return !p.mfa && len(p.acr) == 0 && p.maxAuthAge == 0 }},
		{"no expression", `{}`, func(p *Policy) bool { return p.Expression() == "" && p.prog == nil }},
		{"blank expression", `{when: "  "}`, func(p *Policy) bool { return p.prog == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := mustCompile(t, tt.src); !tt.check(p) {
				t.Errorf("policy %s: default not applied: %+v", tt.src, *p)
			}
		})
	}

	t.Run("built-in max age", func(t *testing.T) {
		p, err := Compile(PolicyConfig{}, Defaults{})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.MaxPostureAge(); got != DefaultMaxPostureAge {
			t.Errorf("MaxPostureAge = %v, want %v", got, DefaultMaxPostureAge)
		}
	})
	t.Run("pointer defaults are not shared", func(t *testing.T) {
		cfg := PolicyConfig{Device: DeviceConfig{Managed: boolp(false)}}
		p, err := Compile(cfg, Defaults{})
		if err != nil {
			t.Fatal(err)
		}
		*cfg.Device.Managed = true
		if p.managed {
			t.Error("changing the config after Compile changed the policy")
		}
	})
	t.Run("DeviceCAs returns a copy", func(t *testing.T) {
		p := mustCompile(t, `{device: {cas: [ivanti]}}`)
		p.DeviceCAs()[0] = "evil"
		if got := p.DeviceCAs()[0]; got != "ivanti" {
			t.Errorf("DeviceCAs()[0] = %q after the caller changed its copy", got)
		}
	})
}

// errorKeys compiles a policy and returns the keys of its field errors.
func errorKeys(t *testing.T, src string) ([]string, error) {
	t.Helper()
	// A bad mode is a decode error (its type refuses it); the rest are
	// Compile's.
	var cfg PolicyConfig
	_, derr := conf.Decode("policy.yaml", []byte(src), &cfg)
	_, err := Compile(cfg, Defaults{})
	err = errors.Join(derr, err)
	var keys []string
	for _, e := range conf.Flatten(err) {
		var fe *conf.FieldError
		var pe *conf.PosError
		switch {
		case errors.As(e, &pe):
			keys = append(keys, pe.Key)
		case errors.As(e, &fe):
			keys = append(keys, fe.Key)
		default:
			t.Fatalf("error %v (%T) is not a *conf.FieldError", e, e)
		}
	}
	return keys, err
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		keys []string
	}{
		{"valid", `{login: okta, device: {certificate: required, max_threat: critical}, user: {max_risk: high}}`, nil},
		{"bad login", `{login: "two words"}`, []string{"login"}},
		{"bad saml login", `{login: "saml:"}`, []string{"login"}},
		{"colon in login", `{login: "oidc:okta"}`, []string{"login"}},
		{"bad certificate", `{device: {certificate: yes please}}`, []string{"device.certificate"}},
		{"bad and duplicate CAs", `{device: {cas: [ivanti, "", ivanti]}}`, []string{"device.cas[1]", "device.cas[2]"}},
		{"bad max_threat", `{device: {max_threat: elevated}}`, []string{"device.max_threat"}},
		{"negative max_age", `{device: {max_age: -1m}}`, []string{"device.max_age"}},
		{"device keys with certificate off",
			`{device: {certificate: off, cas: [x], managed: true, compliant: true, allow_grace: true, max_threat: low,
			  max_age: 1m, allow_unknown: true, allow_stale: true, bind_user: true}}`,
			[]string{"device.cas", "device.managed", "device.compliant", "device.allow_grace", "device.max_threat",
				"device.max_age", "device.allow_unknown", "device.allow_stale", "device.bind_user"}},
		{"false flags with certificate off are fine", `{device: {certificate: off, managed: false, compliant: false}}`, nil},
		{"allow_grace without compliant", `{device: {compliant: false, allow_grace: true}}`, []string{"device.allow_grace"}},
		{"fail-open keys without posture checks",
			`{device: {managed: false, compliant: false, allow_unknown: true, allow_stale: true, max_age: 1m}}`,
			[]string{"device.allow_unknown", "device.allow_stale", "device.max_age"}},
		{"bind_user with login none", `{device: {bind_user: true}}`, []string{"device.bind_user"}},
		{"empty group and acr", `{user: {groups: [eng, " "], acr: [""]}}`, []string{"user.groups[1]", "user.acr[0]"}},
		{"bad max_risk", `{user: {max_risk: severe}}`, []string{"user.max_risk"}},
		{"bad unknown_risk", `{user: {max_risk: low, unknown_risk: maybe}}`, []string{"user.unknown_risk"}},
		{"unknown_risk without max_risk", `{user: {unknown_risk: allow}}`, []string{"user.unknown_risk"}},
		{"negative max_auth_age", `{login: okta, user: {max_auth_age: -1h}}`, []string{"user.max_auth_age"}},
		{"user checks without any user", `{device: {certificate: off}, user: {groups: [eng]}}`, []string{"user.groups"}},
		{"too long expression", `{when: 'true` + strings.Repeat(" ", maxExprLen) + `'}`, []string{"when"}},
		{"validation and CEL errors together", `{device: {max_threat: bad}, when: 'nope'}`, []string{"device.max_threat", "when"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := errorKeys(t, tt.src)
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("error keys = %q, want %q (error: %v)", keys, tt.keys, err)
			}
		})
	}
}

func TestCompileExpressionErrors(t *testing.T) {
	tests := []struct {
		name string
		when string
		msg  string // a part of CEL's message the error must quote
	}{
		{"syntax", `request.method ==`, "Syntax error"},
		{"not bool", `request.path`, "returns string, want bool"},
		{"not bool list", `user.groups`, "want bool"},
		{"dyn is not bool", `dyn(true)`, "want bool"},
		{"unknown variable", `session.id == "x"`, "undeclared reference to 'session'"},
		{"unknown field", `request.body == "x"`, "undeclared reference"},
		{"wrong types", `request.method == 1`, "found no matching overload"},
		{"unknown function", `request.path.frobnicate()`, "undeclared reference to 'frobnicate'"},
		{"too costly", `user.groups.all(a, user.groups.all(b, user.groups.all(c, a + b + c != "")))`, "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := PolicyConfig{When: tt.when}
			_, err := Compile(cfg, Defaults{})
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Key != "when" {
				t.Fatalf("Compile(when: %q) = %v, want a FieldError at key when", tt.when, err)
			}
			if !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", fe.Msg, tt.msg)
			}
		})
	}
}

// TestCompileExpressions compiles expressions a policy author would write:
// the cost bound must leave room for them.
func TestCompileExpressions(t *testing.T) {
	for _, when := range []string{
		`request.method in ["GET", "HEAD"] || "admins" in user.groups`,
		`user.groups.exists(g, g.startsWith("eng-"))`,
		`request.path.matches("^/api/[a-z]+/[0-9]+$") && request.protocol != "HTTP/1.1"`,
		`user.email.lowerAscii().endsWith("@acme.example") && device.threat in ["none", "low"]`,
		`now.getHours("Europe/Paris") < 20 && risk != "high" && device.platform in ["ios", "macos"]`,
		`user.idp == "device-certificate" ? device.user == user.id : "mfa" in user.amr`,
		`!device.present || device.managed && device.compliant && device.os_version >= "17"`,
		`request.remote_ip.startsWith("10.") || user.acr == "phrh"`,
	} {
		if _, err := Compile(PolicyConfig{When: when}, Defaults{}); err != nil {
			t.Errorf("Compile(when: %q): %v", when, err)
		}
	}
}

func TestCertModeString(t *testing.T) {
	for m, want := range map[CertMode]string{CertRequired: "required", CertOptional: "optional", CertOff: "off"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", m, got, want)
		}
	}
}

package enforcement

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"portcullis/internal/conf"
)

// PolicyConfig is the `policy:` key of a resource: who and what may reach
// it. Every check fails closed: something not reported never passes a check
// that needs it, unless a key below says otherwise. [Compile] validates it
// and applies the defaults.
type PolicyConfig struct {
	// Login names how users sign in: "none" (the default: the device
	// certificate is the only credential, and the user named in it is the
	// subject), the name of a configured OIDC provider, or "saml:NAME" for
	// a configured SAML provider. Enforcement only stores it; the gateway
	// checks that the provider exists.
	Login string `yaml:"login"`
	// Device holds the device checks.
	Device DeviceConfig `yaml:"device"`
	// User holds the user checks.
	User UserConfig `yaml:"user"`
	// When is an optional CEL expression, checked after everything else,
	// that must return a bool; false denies. Variables: request (method,
	// host, path, protocol, remote_ip), user (id, email, groups, idp, acr,
	// amr), device (present, id, ca, user, managed, compliant, threat,
	// platform, os_version), risk and now. Example:
	// 'request.method in ["GET", "HEAD"] || "admins" in user.groups'.
	When string `yaml:"when"`
}

// DeviceConfig is the `device:` key of a policy.
type DeviceConfig struct {
	// Certificate is "required" (the default), "optional" (a device without
	// a certificate is let through to the other checks, but one that
	// presents a certificate must pass the device checks) or "off".
	Certificate CertMode `yaml:"certificate"`
	// CAs lists the device CAs (by name) whose certificates this resource
	// accepts. Default: every configured device CA.
	CAs []string `yaml:"cas"`
	// Managed requires every posture source to report the device as
	// managed. Default: true unless certificate is off.
	Managed *bool `yaml:"managed"`
	// Compliant requires every posture source to report the device as
	// compliant. Default: true unless certificate is off.
	Compliant *bool `yaml:"compliant"`
	// AllowGrace lets a non-compliant device through while it is inside
	// the grace period its source reported. Default: false.
	AllowGrace bool `yaml:"allow_grace"`
	// MaxThreat is the highest threat level allowed: none, low, medium,
	// high or critical. A source that reports no threat level fails it.
	// Default: not checked.
	MaxThreat Threat `yaml:"max_threat"`
	// MaxAge is how old a posture record may be before it is stale (and
	// denied). Default: the global posture.max_age.
	MaxAge conf.Duration `yaml:"max_age"`
	// AllowUnknown is an explicit fail-open: a device with a valid
	// certificate but no posture record is let through. Default: false.
	AllowUnknown bool `yaml:"allow_unknown"`
	// AllowStale is an explicit fail-open: stale posture is used as if it
	// were fresh. Default: false.
	AllowStale bool `yaml:"allow_stale"`
	// BindUser requires the signed-in user to be the user named in the
	// device certificate (compared without regard to case). Default:
	// false. Needs a login other than "none".
	BindUser bool `yaml:"bind_user"`
}

// UserConfig is the `user:` key of a policy.
type UserConfig struct {
	// Groups lets in users in any of these groups. Default: any user.
	Groups []string `yaml:"groups"`
	// MaxRisk is the highest user risk allowed: low, medium or high.
	// Default: not checked.
	MaxRisk Risk `yaml:"max_risk"`
	// UnknownRisk says what a missing or unreported risk means when
	// max_risk is set: "deny" (the default) or "allow".
	UnknownRisk UnknownRisk `yaml:"unknown_risk"`
	// MFA requires a multi-factor sign-in: the session's amr must contain
	// mfa, otp, hwk, swk, fpt or face. Default: false.
	MFA bool `yaml:"mfa"`
	// ACR lists the accepted authentication context classes (the session's
	// acr must be one of them). Default: any.
	ACR []string `yaml:"acr"`
	// MaxAuthAge forces a new sign-in when the last one is older than
	// this. Default: 0, not checked.
	MaxAuthAge conf.Duration `yaml:"max_auth_age"`
}

// Certificate modes as written in the configuration.
const (
	certRequired = "required"
	certOptional = "optional"
	certOff      = "off"
)

// LoginNone is the login value of a resource that takes the device
// certificate as the only credential.
const LoginNone = "none"

// maxExprLen bounds the `when` expression, so a configuration cannot make
// the CEL parser do unbounded work.
const maxExprLen = 16 << 10

// Validate checks c without compiling its expression (see [Compile]) and
// returns every problem as [conf.FieldError]s keyed relative to the policy
// ("device.max_threat"), joined with errors.Join.
func (c *PolicyConfig) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, conf.Errorf(key, format, args...))
	}

	login := c.login()
	switch {
	case login == LoginNone:
	case strings.HasPrefix(login, "saml:"):
		if !validName(strings.TrimPrefix(login, "saml:")) {
			add("login", "invalid SAML provider name %q (want saml:NAME)", login)
		}
	case !validName(login):
		add("login", "invalid value %q (want none, an OIDC provider name or saml:NAME)", login)
	}

	d := &c.Device
	mode := d.mode()
	seen := map[string]bool{}
	for i, ca := range d.CAs {
		switch {
		case !validName(ca):
			add(indexKey("device.cas", i), "invalid device CA name %q", ca)
		case seen[ca]:
			add(indexKey("device.cas", i), "duplicate device CA %q", ca)
		}
		seen[ca] = true
	}
	if d.MaxAge < 0 {
		add("device.max_age", "must not be negative")
	}
	if mode == CertOff {
		// Every device key needs a certificate to mean anything; silently
		// ignoring them would let a typo weaken a policy.
		off := func(key string, set bool) {
			if set {
				add("device."+key, "needs a device certificate, but device.certificate is off")
			}
		}
		off("cas", len(d.CAs) > 0)
		off("managed", d.Managed != nil && *d.Managed)
		off("compliant", d.Compliant != nil && *d.Compliant)
		off("allow_grace", d.AllowGrace)
		off("max_threat", d.MaxThreat != "")
		off("max_age", d.MaxAge != 0)
		off("allow_unknown", d.AllowUnknown)
		off("allow_stale", d.AllowStale)
		off("bind_user", d.BindUser)
	} else {
		if d.AllowGrace && !d.compliant() {
			add("device.allow_grace", "has no effect unless device.compliant is true")
		}
		if !d.checksPosture() {
			if d.AllowUnknown {
				add("device.allow_unknown", "has no effect: no posture check is enabled")
			}
			if d.AllowStale {
				add("device.allow_stale", "has no effect: no posture check is enabled")
			}
			if d.MaxAge != 0 {
				add("device.max_age", "has no effect: no posture check is enabled")
			}
		}
		if d.BindUser && login == LoginNone {
			add("device.bind_user", "has no effect with login none (the certificate's user is the subject)")
		}
	}

	u := &c.User
	for i, g := range u.Groups {
		if strings.TrimSpace(g) == "" {
			add(indexKey("user.groups", i), "must not be empty")
		}
	}
	if u.UnknownRisk != "" && u.MaxRisk == "" {
		add("user.unknown_risk", "has no effect unless user.max_risk is set")
	}
	for i, a := range u.ACR {
		if strings.TrimSpace(a) == "" {
			add(indexKey("user.acr", i), "must not be empty")
		}
	}
	if u.MaxAuthAge < 0 {
		add("user.max_auth_age", "must not be negative")
	}
	if key := u.firstKey(); key != "" && login == LoginNone && mode == CertOff {
		add(key, "needs a user, but login is none and device.certificate is off")
	}

	if len(c.When) > maxExprLen {
		add("when", "expression is longer than %d bytes", maxExprLen)
	}
	return errors.Join(errs...)
}

func (c *PolicyConfig) login() string {
	if c.Login == "" {
		return LoginNone
	}
	return c.Login
}

func (d *DeviceConfig) mode() CertMode {
	if d.Certificate > CertOff {
		return CertRequired // not a mode: fail closed
	}
	return d.Certificate
}

func (d *DeviceConfig) managed() bool {
	if d.Managed != nil {
		return *d.Managed
	}
	return d.mode() != CertOff
}

func (d *DeviceConfig) compliant() bool {
	if d.Compliant != nil {
		return *d.Compliant
	}
	return d.mode() != CertOff
}

// checksPosture reports whether any check needs a posture record.
func (d *DeviceConfig) checksPosture() bool {
	return d.mode() != CertOff && (d.managed() || d.compliant() || d.MaxThreat != "")
}

// firstKey names the first user key that needs a signed-in user, or "".
func (u *UserConfig) firstKey() string {
	switch {
	case len(u.Groups) > 0:
		return "user.groups"
	case u.MaxRisk != "":
		return "user.max_risk"
	case u.MFA:
		return "user.mfa"
	case len(u.ACR) > 0:
		return "user.acr"
	case u.MaxAuthAge > 0:
		return "user.max_auth_age"
	}
	return ""
}

// validName accepts provider and CA names: 1 to 128 printable characters,
// with no spaces and no colon (which separates a login's kind from its name).
func validName(s string) bool {
	if s == "" || len(s) > 128 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func indexKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

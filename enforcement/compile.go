package enforcement

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"

	"portcullis/internal/conf"
	"portcullis/posture"
)

// CertMode says whether a resource asks for a device certificate.
type CertMode uint8

// The certificate modes of device.certificate.
const (
	CertRequired CertMode = iota // zero value: the strictest mode
	CertOptional
	CertOff
)

// String returns the mode as the configuration writes it.
func (m CertMode) String() string {
	switch m {
	case CertOptional:
		return certOptional
	case CertOff:
		return certOff
	}
	return certRequired
}

// DefaultMaxPostureAge is the posture age limit used when neither the
// resource nor [Defaults] sets one.
const DefaultMaxPostureAge = 15 * time.Minute

// Defaults are the global settings a policy falls back to.
type Defaults struct {
	// MaxPostureAge is the global posture.max_age; zero or negative means
	// [DefaultMaxPostureAge].
	MaxPostureAge time.Duration
}

// A Policy is a compiled [PolicyConfig]. It is immutable and safe for
// concurrent use; [Decide] reads it.
type Policy struct {
	login string

	cert         CertMode
	cas          []string
	posture      bool // some check needs a posture record
	managed      bool
	compliant    bool
	allowGrace   bool
	maxThreat    posture.ThreatLevel // ThreatUnknown: not checked
	maxAge       time.Duration
	allowUnknown bool
	allowStale   bool
	bindUser     bool

	needUser    bool
	loginRule   string // the key that made a user necessary
	groups      []string
	maxRisk     posture.RiskLevel // RiskUnknown: not checked
	unknownRisk bool              // allow a missing or unreported risk
	mfa         bool
	acr         []string
	maxAuthAge  time.Duration

	when string
	prog cel.Program // nil without an expression
}

// Compile validates cfg, applies its defaults and compiles its CEL
// expression (parsed, type-checked to return a bool, and planned). It
// returns every problem as [conf.FieldError]s keyed relative to the policy;
// a CEL problem is one at key "when" quoting CEL's message.
func Compile(cfg PolicyConfig, d Defaults) (*Policy, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	var prog cel.Program
	if strings.TrimSpace(cfg.When) != "" && len(cfg.When) <= maxExprLen {
		p, err := compileExpr(cfg.When)
		if err != nil {
			errs = append(errs, conf.Errorf("when", "%v", err))
		}
		prog = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	dc, uc := &cfg.Device, &cfg.User
	p := &Policy{
		login:        cfg.login(),
		cert:         dc.mode(),
		cas:          slices.Clone(dc.CAs),
		posture:      dc.checksPosture(),
		managed:      dc.managed(),
		compliant:    dc.compliant(),
		allowGrace:   dc.AllowGrace,
		maxAge:       dc.MaxAge.Std(),
		allowUnknown: dc.AllowUnknown,
		allowStale:   dc.AllowStale,
		bindUser:     dc.BindUser,
		groups:       slices.Clone(uc.Groups),
		unknownRisk:  uc.UnknownRisk == UnknownRiskAllow,
		mfa:          uc.MFA,
		acr:          slices.Clone(uc.ACR),
		maxAuthAge:   uc.MaxAuthAge.Std(),
		prog:         prog,
	}
	if prog != nil {
		p.when = cfg.When
	}
	p.maxThreat = dc.MaxThreat.level()
	p.maxRisk = uc.MaxRisk.level()
	if p.cert == CertOff {
		p.managed, p.compliant = false, false
	}
	if p.maxAge <= 0 {
		p.maxAge = d.MaxPostureAge
	}
	if p.maxAge <= 0 {
		p.maxAge = DefaultMaxPostureAge
	}
	switch key := uc.firstKey(); {
	case p.login != LoginNone:
		p.needUser, p.loginRule = true, "policy.login"
	case key != "":
		p.needUser, p.loginRule = true, "policy."+key
	}
	return p, nil
}

// Login returns the configured login: "none", an OIDC provider name, or
// "saml:NAME".
func (p *Policy) Login() string { return p.login }

// DeviceCertificate returns whether the resource asks for a device
// certificate.
func (p *Policy) DeviceCertificate() CertMode { return p.cert }

// DeviceCAs returns the names of the device CAs the resource accepts; empty
// means all. The caller owns the slice.
func (p *Policy) DeviceCAs() []string { return slices.Clone(p.cas) }

// MaxPostureAge returns the age beyond which posture is stale, after
// defaults.
func (p *Policy) MaxPostureAge() time.Duration { return p.maxAge }

// Expression returns the policy's CEL expression, or "".
func (p *Policy) Expression() string { return p.when }

// NeedsUser reports whether [Decide] asks for a signed-in user (a
// [Subject]) before it can allow a request.
func (p *Policy) NeedsUser() bool { return p.needUser }

// NeedsPosture reports whether a device check needs a posture record, so
// that a missing one denies. Decide reads a record whenever it is given
// one, though: a blocked device state denies even without posture checks,
// so the gateway should pass the posture of every device it sees.
func (p *Policy) NeedsPosture() bool { return p.posture }

package enforcement

import (
	"portcullis/internal/conf"
	"portcullis/posture"
)

// UnmarshalText implements [encoding.TextUnmarshaler]: "required",
// "optional" or "off".
func (m *CertMode) UnmarshalText(b []byte) error {
	s, err := conf.Enum(b, certRequired, certOptional, certOff)
	switch s {
	case certOptional:
		*m = CertOptional
	case certOff:
		*m = CertOff
	default:
		*m = CertRequired
	}
	return err
}

// MarshalText implements [encoding.TextMarshaler].
func (m CertMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Threat is a threat level as a policy writes it: none, low, medium, high
// or critical. Empty means not checked.
type Threat string

// UnmarshalText implements [encoding.TextUnmarshaler].
func (t *Threat) UnmarshalText(b []byte) (err error) {
	*t, err = conf.Enum[Threat](b, "none", "low", "medium", "high", "critical")
	return err
}

// level returns t as a posture level; ThreatUnknown (not checked) for ""
// and for a value no decoder accepted.
func (t Threat) level() posture.ThreatLevel {
	l, _ := posture.ParseThreatLevel(string(t))
	return l
}

// Risk is a user risk level as a policy writes it: low, medium or high.
// Empty means not checked.
type Risk string

// UnmarshalText implements [encoding.TextUnmarshaler].
func (r *Risk) UnmarshalText(b []byte) (err error) {
	*r, err = conf.Enum[Risk](b, "low", "medium", "high")
	return err
}

// level returns r as a posture level; RiskUnknown (not checked) for "" and
// for a value no decoder accepted.
func (r Risk) level() posture.RiskLevel {
	l, _ := posture.ParseRiskLevel(string(r))
	return l
}

// UnknownRisk says what a missing risk report means when max_risk is set.
type UnknownRisk string

// Values of UnknownRisk; empty is UnknownRiskDeny.
const (
	UnknownRiskDeny  UnknownRisk = "deny"
	UnknownRiskAllow UnknownRisk = "allow"
)

// UnmarshalText implements [encoding.TextUnmarshaler].
func (u *UnknownRisk) UnmarshalText(b []byte) (err error) {
	*u, err = conf.Enum(b, UnknownRiskDeny, UnknownRiskAllow)
	return err
}

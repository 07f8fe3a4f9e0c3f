package posture

// The wire and storage names of the enumerations. They are stable: the
// store persists them and feeds parse them.

var threatNames = [...]string{
	ThreatUnknown:  "",
	ThreatNone:     "none",
	ThreatLow:      "low",
	ThreatMedium:   "medium",
	ThreatHigh:     "high",
	ThreatCritical: "critical",
}

var riskNames = [...]string{
	RiskUnknown: "",
	RiskLow:     "low",
	RiskMedium:  "medium",
	RiskHigh:    "high",
}

var stateNames = [...]string{
	StateUnreported:  "",
	StateActive:      "active",
	StateQuarantined: "quarantined",
	StateRetired:     "retired",
	StateWiped:       "wiped",
	StateLost:        "lost",
}

var complianceNames = [...]string{
	ComplianceUnknown: "",
	Compliant:         "compliant",
	NotCompliant:      "not_compliant",
}

// String returns the level's wire name ("none" … "critical"), or "" when
// not reported.
func (l ThreatLevel) String() string { return enumName(threatNames[:], l) }

// String returns the level's wire name ("low", "medium", "high"), or ""
// when not reported.
func (l RiskLevel) String() string { return enumName(riskNames[:], l) }

// String returns the state's wire name ("active", "quarantined", …), or ""
// when not reported.
func (s DeviceState) String() string { return enumName(stateNames[:], s) }

// String returns "compliant", "not_compliant", or "" when not reported.
func (c Compliance) String() string { return enumName(complianceNames[:], c) }

// ParseThreatLevel parses a wire name; ok is false for an unknown one.
// The empty string is ThreatUnknown.
func ParseThreatLevel(s string) (ThreatLevel, bool) { return parseEnum[ThreatLevel](threatNames[:], s) }

// ParseRiskLevel parses a wire name; ok is false for an unknown one. The
// empty string is RiskUnknown.
func ParseRiskLevel(s string) (RiskLevel, bool) { return parseEnum[RiskLevel](riskNames[:], s) }

// ParseDeviceState parses a wire name; ok is false for an unknown one. The
// empty string is StateUnreported.
func ParseDeviceState(s string) (DeviceState, bool) { return parseEnum[DeviceState](stateNames[:], s) }

// ParseCompliance parses a name written by [Compliance.String].
func ParseCompliance(s string) (Compliance, bool) {
	return parseEnum[Compliance](complianceNames[:], s)
}

func enumName[T ~uint8](names []string, v T) string {
	if int(v) < len(names) {
		return names[v]
	}
	return "invalid"
}

func parseEnum[T ~uint8](names []string, s string) (T, bool) {
	for i, n := range names {
		if n == s {
			return T(i), true
		}
	}
	return 0, false
}

package enforcement

import "portcullis/posture"

// parseThreat maps a configured threat level to its value. "" maps to
// ThreatUnknown, which a policy reads as "not checked".
func parseThreat(s string) (posture.ThreatLevel, bool) {
	switch s {
	case "":
		return posture.ThreatUnknown, true
	case "none":
		return posture.ThreatNone, true
	case "low":
		return posture.ThreatLow, true
	case "medium":
		return posture.ThreatMedium, true
	case "high":
		return posture.ThreatHigh, true
	case "critical":
		return posture.ThreatCritical, true
	}
	return posture.ThreatUnknown, false
}

// threatName is the inverse of parseThreat: "" for ThreatUnknown.
func threatName(t posture.ThreatLevel) string {
	switch t {
	case posture.ThreatNone:
		return "none"
	case posture.ThreatLow:
		return "low"
	case posture.ThreatMedium:
		return "medium"
	case posture.ThreatHigh:
		return "high"
	case posture.ThreatCritical:
		return "critical"
	}
	return ""
}

// parseRisk maps a configured risk level to its value. "" maps to
// RiskUnknown, which a policy reads as "not checked".
func parseRisk(s string) (posture.RiskLevel, bool) {
	switch s {
	case "":
		return posture.RiskUnknown, true
	case "low":
		return posture.RiskLow, true
	case "medium":
		return posture.RiskMedium, true
	case "high":
		return posture.RiskHigh, true
	}
	return posture.RiskUnknown, false
}

// riskName is the inverse of parseRisk: "" for RiskUnknown.
func riskName(r posture.RiskLevel) string {
	switch r {
	case posture.RiskLow:
		return "low"
	case posture.RiskMedium:
		return "medium"
	case posture.RiskHigh:
		return "high"
	}
	return ""
}

package enforcement

import "portcullis/posture"

// threatName is a threat level as a policy writes it: "" for ThreatUnknown.
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

// riskName is a risk level as a policy writes it: "" for RiskUnknown.
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

package posture

import (
	"slices"
	"time"
)

// Restrictiveness ranks: a higher rank fails more policies. When a source
// reports two different states observed at the same instant, the store
// keeps the more restrictive value of each field (device-feeds.md §2.2).
// "Not reported" fails every policy that asks about the field, so it ranks
// above every good value.

func complianceRank(c Compliance) int {
	switch c {
	case Compliant:
		return 0
	case ComplianceUnknown:
		return 1
	}
	return 2 // NotCompliant, or anything unexpected
}

func threatRank(t ThreatLevel) int {
	if t == ThreatUnknown {
		return int(ThreatCritical) + 1
	}
	return int(t)
}

func stateRank(s DeviceState) int {
	switch s {
	case StateActive:
		return 0
	case StateUnreported:
		return 1
	}
	return 1 + int(s)
}

// restrictiveGrace returns the grace deadline that allows less: none (zero)
// over any, else the earlier one.
func restrictiveGrace(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if a.Before(b) {
		return a
	}
	return b
}

// union returns the sorted distinct strings of a and b (nil when both are
// empty).
func union(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]string, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// mergePosture combines two reports observed at the same instant, keeping
// the more restrictive value of each field. Descriptive fields (platform,
// OS version, user) keep old unless it is empty.
func mergePosture(old, nw *Posture) Posture {
	m := *old
	m.Managed = old.Managed && nw.Managed
	if complianceRank(nw.Compliance) > complianceRank(old.Compliance) {
		m.Compliance = nw.Compliance
	}
	m.GraceUntil = restrictiveGrace(old.GraceUntil, nw.GraceUntil)
	if threatRank(nw.Threat) > threatRank(old.Threat) {
		m.Threat = nw.Threat
	}
	if stateRank(nw.State) > stateRank(old.State) {
		m.State = nw.State
	}
	m.ThreatNames = union(old.ThreatNames, nw.ThreatNames)
	m.Reasons = union(old.Reasons, nw.Reasons)
	if m.Platform == "" {
		m.Platform = nw.Platform
	}
	if m.OSVersion == "" {
		m.OSVersion = nw.OSVersion
	}
	if m.User == "" {
		m.User = nw.User
	}
	return m
}

// samePosture reports whether a and b say the same thing (ignoring the
// event id and when it was received).
func samePosture(a, b *Posture) bool {
	return a.Source == b.Source && a.Managed == b.Managed && a.Compliance == b.Compliance &&
		a.GraceUntil.Equal(b.GraceUntil) && a.Threat == b.Threat && a.State == b.State &&
		a.Platform == b.Platform && a.OSVersion == b.OSVersion && a.User == b.User &&
		a.ObservedAt.Equal(b.ObservedAt) &&
		sameSet(a.ThreatNames, b.ThreatNames) && sameSet(a.Reasons, b.Reasons)
}

func sameSet(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(union(a, nil), union(b, nil))
}

// mergeRisk combines two verdicts observed at the same instant: the higher
// level wins and the reasons are joined.
func mergeRisk(old, nw *UserRisk) UserRisk {
	m := *old
	if nw.Level > old.Level {
		m.Level = nw.Level
		m.Source = nw.Source
	}
	m.Reasons = union(old.Reasons, nw.Reasons)
	return m
}

func sameRisk(a, b *UserRisk) bool {
	return a.Level == b.Level && a.Source == b.Source && a.ObservedAt.Equal(b.ObservedAt) && sameSet(a.Reasons, b.Reasons)
}

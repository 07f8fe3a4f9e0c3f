package posture

import (
	"cmp"
	"slices"
	"time"
)

// Ordering and ties.
//
// Feeds order a source's reports by when the source observed them, and
// many sources give that time to the whole second only. So the store
// compares observed times by whole seconds ([compareObserved]): a report
// observed in an earlier second than the stored one is out of order; one
// in the same second ties with it, whatever fractions either carries; one
// in a later second replaces it. On a tie neither report can be said to
// come last, so the store keeps the more restrictive of the two
// ([MoreRestrictive], [moreRestrictiveRisk]): it fails closed.

// compareObserved compares two observed times by whole seconds: -1 when a
// lies in an earlier second than b, 0 in the same one, +1 in a later one.
func compareObserved(a, b time.Time) int {
	return cmp.Compare(a.Unix(), b.Unix())
}

// Restrictiveness ranks: a higher rank fails more policies. "Not reported"
// fails every policy that asks about the field, so it ranks above every
// good value.

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

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// MoreRestrictive is the one definition of "more restrictive" for device
// posture: it combines two reports of one source that tie (observed in
// the same second), keeping, member by member, the value that allows
// less:
//
//   - compliance: not compliant over unknown over compliant;
//   - threat: the higher level, and an unreported level over any;
//   - state: a blocked state (quarantined, retired, wiped, lost) over
//     unreported over active;
//   - managed: unmanaged over managed;
//   - grace: none over any, else the earlier deadline;
//   - threat names and reasons: the union of both.
//
// Descriptive members (platform, OS version, user) keep old's unless it
// has none. The result is observed at the later of the two times, so a
// tie never makes a record look older. Neither argument is modified.
func MoreRestrictive(old, nw *Posture) Posture {
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
	m.ObservedAt = later(old.ObservedAt, nw.ObservedAt)
	return m
}

// samePosture reports whether a and b say the same thing (ignoring the
// event id and when it was observed and received: a tie that changes
// nothing but a fraction of a second is not worth a write).
func samePosture(a, b *Posture) bool {
	return a.Source == b.Source && a.Managed == b.Managed && a.Compliance == b.Compliance &&
		a.GraceUntil.Equal(b.GraceUntil) && a.Threat == b.Threat && a.State == b.State &&
		a.Platform == b.Platform && a.OSVersion == b.OSVersion && a.User == b.User &&
		sameSet(a.ThreatNames, b.ThreatNames) && sameSet(a.Reasons, b.Reasons)
}

func sameSet(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(union(a, nil), union(b, nil))
}

// moreRestrictiveRisk is [MoreRestrictive] for user risk: of two verdicts
// that tie, the higher level wins (with its source) and the reasons are
// joined.
func moreRestrictiveRisk(old, nw *UserRisk) UserRisk {
	m := *old
	if nw.Level > old.Level {
		m.Level = nw.Level
		m.Source = nw.Source
	}
	m.Reasons = union(old.Reasons, nw.Reasons)
	m.ObservedAt = later(old.ObservedAt, nw.ObservedAt)
	return m
}

func sameRisk(a, b *UserRisk) bool {
	return a.Level == b.Level && a.Source == b.Source && sameSet(a.Reasons, b.Reasons)
}

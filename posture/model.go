package posture

import "time"

// DeviceKey is the posture key of a device: the device CA that vouches
// for it and the device id its certificate carries.
type DeviceKey struct {
	CA string
	ID string
}

func (k DeviceKey) String() string { return k.CA + "/" + k.ID }

// ThreatLevel is a mobile-threat verdict. The zero value means not
// reported, which a policy that limits threats treats as failing.
type ThreatLevel uint8

const (
	ThreatUnknown ThreatLevel = iota
	ThreatNone
	ThreatLow
	ThreatMedium
	ThreatHigh
	ThreatCritical
)

// RiskLevel is a user-risk verdict (Okta ITP, CAEP risk-level-change). The
// zero value means not reported.
type RiskLevel uint8

const (
	RiskUnknown RiskLevel = iota
	RiskLow
	RiskMedium
	RiskHigh
)

// Compliance is a tri-state: not reported, compliant, not compliant.
type Compliance uint8

const (
	ComplianceUnknown Compliance = iota
	Compliant
	NotCompliant
)

// DeviceState is the device's lifecycle state; anything but active (or not
// reported) is a hard deny.
type DeviceState uint8

const (
	StateUnreported DeviceState = iota
	StateActive
	StateQuarantined
	StateRetired
	StateWiped
	StateLost
)

// Posture is one source's latest report about one device. Records are
// immutable once stored; readers may keep them.
type Posture struct {
	Source      string // the feed that reported it
	EventID     string
	Managed     bool
	Compliance  Compliance
	GraceUntil  time.Time // non-compliant but allowed until then; zero if none
	Threat      ThreatLevel
	ThreatNames []string
	State       DeviceState
	Platform    string
	OSVersion   string
	User        string
	Reasons     []string
	ObservedAt  time.Time // when the source observed it
	ReceivedAt  time.Time // when we stored it
	// Rev is the shared store's revision of the record (see [Shared]);
	// 0 in the embedded store.
	Rev uint64
}

// Device is everything known about one device: one record per source, in
// source-name order. A Device returned by the store is immutable.
type Device struct {
	Key     DeviceKey
	Records []Posture
}

// UserRisk is the latest risk verdict about one user. Immutable once stored.
type UserRisk struct {
	User       string // lower-cased user id (UPN or email)
	Level      RiskLevel
	Reasons    []string
	Source     string
	EventID    string
	ObservedAt time.Time
	ReceivedAt time.Time
	Rev        uint64 // see [Posture.Rev]
}

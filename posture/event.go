package posture

import "time"

// A PostureEvent is one source's report about one device, as a feed hands
// it to [DB.ApplyPosture]. Posture.Source and Posture.EventID identify the
// event (the dedup key); Posture.ObservedAt orders it; the store sets
// Posture.ReceivedAt.
type PostureEvent struct {
	Key     DeviceKey
	Posture Posture
	// Guard, when set, names the delivery the event comes from (see
	// [Guard]).
	Guard Guard
}

// A RiskEvent is one source's risk verdict about one user, as a feed hands
// it to [DB.ApplyRisk]. Risk.User must be lower-cased by the feed.
type RiskEvent struct {
	Risk  UserRisk
	Guard Guard // see [PostureEvent.Guard]
}

// A Guard names one delivery that causes several writes, of several kinds
// and sources: an SSF Security Event Token, by its issuer and jti. The
// first time the store commits a write with a given guard, every write
// with that guard in the same request is applied as usual; a later
// request with the same guard, within the dedup window of the request that
// recorded it, has all those writes refused as [Duplicate], whatever their
// own sources and event ids. A delivery is so applied at most once, even
// when a sender reuses its id for other content. The zero Guard guards
// nothing.
type Guard struct {
	Issuer string
	ID     string
}

// Outcome is what the store did with one event.
type Outcome uint8

const (
	// Applied: the event changed the stored record.
	Applied Outcome = iota
	// Duplicate: an event with the same (source, event id) was seen within
	// the dedup window; nothing changed.
	Duplicate
	// OutOfOrder: the stored record was observed in a later second (or
	// in the same second and is at least as restrictive); the event was
	// accepted and dropped.
	OutOfOrder
)

// String returns the stable name used in replies and metrics.
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case OutOfOrder:
		return "out_of_order"
	}
	return "unknown"
}

// ChangeKind says what a [Change] is about.
type ChangeKind uint8

const (
	// DeviceChanged: a device's posture record changed.
	DeviceChanged ChangeKind = iota + 1
	// RiskChanged: a user's risk record changed.
	RiskChanged
	// RevocationChanged: a session, a user's sessions or a device were
	// revoked. User is set when the revocation names a user; Device for a
	// device revocation; Session for a session revocation.
	RevocationChanged
)

// A Change tells a subscriber that a record changed and was committed.
// For DeviceChanged, Device is set; for RiskChanged, User; for
// RevocationChanged, see [RevocationChanged].
type Change struct {
	Kind    ChangeKind
	Device  *DeviceKey // for DeviceChanged; the subscriber must not modify it
	User    string     // for RiskChanged
	Session string     // for RevocationChanged of one session
	// Lost reports that changes were dropped before this one because the
	// subscriber's channel was full: the subscriber should re-evaluate
	// everything.
	Lost bool
	// At is when the change was committed.
	At time.Time
}

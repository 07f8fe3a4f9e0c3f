package posture

import (
	"sync/atomic"
	"time"
)

// DefaultRevocationTTL is how long a revoked session id is remembered. It
// must outlive every session the gateway issues.
const DefaultRevocationTTL = 30 * 24 * time.Hour

// RevocationKind says what a [Revocation] revokes.
type RevocationKind uint8

const (
	// RevokeSession revokes one session, by id.
	RevokeSession RevocationKind = iota + 1
	// RevokeUser revokes every session of a user issued before a time.
	RevokeUser
	// RevokeDevice revokes a device: every session and connection it
	// opened before a time.
	RevokeDevice
)

var revocationKindNames = [...]string{"", "session", "user", "device"}

// String returns "session", "user" or "device".
func (k RevocationKind) String() string { return enumName(revocationKindNames[:], k) }

// ParseRevocationKind parses a name written by [RevocationKind.String].
func ParseRevocationKind(s string) (RevocationKind, bool) {
	k, ok := parseEnum[RevocationKind](revocationKindNames[:], s)
	return k, ok && k != 0
}

// A Revocation is one stored revocation. Immutable once stored.
//
// For [RevokeUser] and [RevokeDevice] the store keeps one record per user
// or device, with the latest Before: "everything issued before Before is
// revoked" is idempotent and safe to apply late or twice. For
// [RevokeSession] it keeps one record per session id until ExpiresAt.
type Revocation struct {
	Kind    RevocationKind
	Session string    // RevokeSession
	User    string    // RevokeUser (lower-cased); informational for the others
	Device  DeviceKey // RevokeDevice
	// Before is the cut-off: sessions (or device connections) issued
	// before it are revoked. For RevokeSession it is when the session was
	// revoked. Zero means ObservedAt.
	Before     time.Time
	Reasons    []string
	Source     string
	EventID    string
	ObservedAt time.Time
	ReceivedAt time.Time
	ExpiresAt  time.Time // RevokeSession: when the record is forgotten
	Rev        uint64    // see [Posture.Rev]
}

// A RevocationEvent is one source's revocation, as a feed or the admin
// API hands it to [DB.ApplyRevocations]. Revocation.Source and
// Revocation.EventID are the dedup key.
type RevocationEvent struct {
	Revocation Revocation
	Guard      Guard // see [PostureEvent.Guard]
}

// revShard is one shard of a revocation index. Readers load the map
// without a lock; the commit leader replaces it with a modified copy.
type revShard[K comparable] struct {
	m atomic.Pointer[map[K]*Revocation]
}

func (s *revShard[K]) load() map[K]*Revocation {
	if p := s.m.Load(); p != nil {
		return *p
	}
	return nil
}

// revIndex is the in-memory revocation state.
type revIndex struct {
	sessions [shardCount]revShard[string]
	users    [shardCount]revShard[string]
	devices  [shardCount]revShard[DeviceKey]
	n        atomic.Int64 // records of every kind; 0 skips the lookups
}

// SessionRevoked reports whether the session id was revoked. It takes no
// lock and allocates nothing.
func (db *DB) SessionRevoked(sessionID string) bool {
	if db.revs.n.Load() == 0 || sessionID == "" {
		return false
	}
	r := db.revs.sessions[userShardOf(sessionID)].load()[sessionID]
	return r != nil
}

// UserRevokedBefore returns the time before which every session of user
// (lower-cased) is revoked, or the zero time. It takes no lock and
// allocates nothing.
func (db *DB) UserRevokedBefore(user string) time.Time {
	if db.revs.n.Load() == 0 {
		return time.Time{}
	}
	if r := db.revs.users[userShardOf(user)].load()[user]; r != nil {
		return r.Before
	}
	return time.Time{}
}

// DeviceRevokedBefore returns the time before which every session and
// connection of the device is revoked, or the zero time. It takes no lock
// and allocates nothing.
func (db *DB) DeviceRevokedBefore(k DeviceKey) time.Time {
	if db.revs.n.Load() == 0 {
		return time.Time{}
	}
	if r := db.revs.devices[deviceShardOf(k)].load()[k]; r != nil {
		return r.Before
	}
	return time.Time{}
}

// UserRevocation returns the user's revocation record, or nil.
func (db *DB) UserRevocation(user string) *Revocation {
	return db.revs.users[userShardOf(user)].load()[user]
}

// DeviceRevocation returns the device's revocation record, or nil.
func (db *DB) DeviceRevocation(k DeviceKey) *Revocation {
	return db.revs.devices[deviceShardOf(k)].load()[k]
}

// RangeRevocations calls f for every revocation record (sessions, users
// and devices) until f returns false. It may run while writes commit and
// see some of them.
func (db *DB) RangeRevocations(f func(*Revocation) bool) {
	for i := range db.revs.users {
		for _, r := range db.revs.users[i].load() {
			if !f(r) {
				return
			}
		}
	}
	for i := range db.revs.devices {
		for _, r := range db.revs.devices[i].load() {
			if !f(r) {
				return
			}
		}
	}
	for i := range db.revs.sessions {
		for _, r := range db.revs.sessions[i].load() {
			if !f(r) {
				return
			}
		}
	}
}

// cowPut stores v under k in a copy of the shard's map, copying the map
// at most once per transaction (tracked in copied).
func cowPut[K comparable](s *revShard[K], copied map[*revShard[K]]map[K]*Revocation, k K, v *Revocation) {
	m, ok := copied[s]
	if !ok {
		old := s.load()
		m = make(map[K]*Revocation, len(old)+1)
		for k2, v2 := range old {
			m[k2] = v2
		}
		copied[s] = m
	}
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// revDelta is the change in the record count when a record that was
// present (had) is replaced by one that is present (has), or removed.
func revDelta(had, has bool) int64 {
	switch {
	case had && !has:
		return -1
	case !had && has:
		return 1
	}
	return 0
}

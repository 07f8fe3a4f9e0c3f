package posture

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Storage layout of posture.db (schema 1):
//
//	meta:    "schema" → "1"
//	devices: key(ca, id, source) → JSON storedPosture
//	users:   user → JSON storedRisk
//	dedup:   key(source, event_id) → 8-byte big-endian expiry (Unix ns)
//
// Keys are length-prefixed (uvarint) strings, so no value can collide with
// another whatever bytes it holds. Enumerations are stored by name, so the
// file does not depend on the order of Go constants.

var (
	bucketMeta    = []byte("meta")
	bucketDevices = []byte("devices")
	bucketUsers   = []byte("users")
	bucketDedup   = []byte("dedup")
	keySchema     = []byte("schema")
)

const schemaVersion = "1"

func appendKeyPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func joinKeyParts(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = appendKeyPart(b, p)
	}
	return b
}

var errBadKey = errors.New("malformed key")

func splitKeyParts(b []byte, n int) ([]string, error) {
	out := make([]string, 0, n)
	for len(b) > 0 {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, errBadKey
		}
		out = append(out, string(b[k:k+int(l)]))
		b = b[k+int(l):]
	}
	if len(out) != n {
		return nil, errBadKey
	}
	return out, nil
}

func deviceRecordKey(k DeviceKey, source string) []byte {
	return joinKeyParts(k.CA, k.ID, source)
}

func dedupKey(source, eventID string) string {
	return string(joinKeyParts(source, eventID))
}

// guardKey is the dedup key of a [Guard]. Its first part is empty, which
// no source is, so it never equals a dedupKey.
func guardKey(g Guard) string {
	return string(joinKeyParts("", "guard", g.Issuer, g.ID))
}

type storedPosture struct {
	EventID     string    `json:"event_id"`
	Managed     bool      `json:"managed"`
	Compliance  string    `json:"compliance,omitempty"`
	GraceUntil  time.Time `json:"grace_until,omitzero"`
	Threat      string    `json:"threat,omitempty"`
	ThreatNames []string  `json:"threat_names,omitempty"`
	State       string    `json:"state,omitempty"`
	Platform    string    `json:"platform,omitempty"`
	OSVersion   string    `json:"os_version,omitempty"`
	User        string    `json:"user,omitempty"`
	Reasons     []string  `json:"reasons,omitempty"`
	ObservedAt  time.Time `json:"observed_at"`
	ReceivedAt  time.Time `json:"received_at"`
}

func encodePosture(p *Posture) ([]byte, error) {
	return json.Marshal(storedPosture{
		EventID:     p.EventID,
		Managed:     p.Managed,
		Compliance:  p.Compliance.String(),
		GraceUntil:  p.GraceUntil,
		Threat:      p.Threat.String(),
		ThreatNames: p.ThreatNames,
		State:       p.State.String(),
		Platform:    p.Platform,
		OSVersion:   p.OSVersion,
		User:        p.User,
		Reasons:     p.Reasons,
		ObservedAt:  p.ObservedAt,
		ReceivedAt:  p.ReceivedAt,
	})
}

func decodePosture(source string, b []byte) (Posture, error) {
	var s storedPosture
	if err := json.Unmarshal(b, &s); err != nil {
		return Posture{}, err
	}
	c, ok1 := ParseCompliance(s.Compliance)
	t, ok2 := ParseThreatLevel(s.Threat)
	st, ok3 := ParseDeviceState(s.State)
	if !ok1 || !ok2 || !ok3 {
		return Posture{}, fmt.Errorf("unknown enumeration value in %q/%q/%q", s.Compliance, s.Threat, s.State)
	}
	return Posture{
		Source:      source,
		EventID:     s.EventID,
		Managed:     s.Managed,
		Compliance:  c,
		GraceUntil:  s.GraceUntil,
		Threat:      t,
		ThreatNames: s.ThreatNames,
		State:       st,
		Platform:    s.Platform,
		OSVersion:   s.OSVersion,
		User:        s.User,
		Reasons:     s.Reasons,
		ObservedAt:  s.ObservedAt,
		ReceivedAt:  s.ReceivedAt,
	}, nil
}

type storedRisk struct {
	Level      string    `json:"level,omitempty"`
	Reasons    []string  `json:"reasons,omitempty"`
	Source     string    `json:"source"`
	EventID    string    `json:"event_id"`
	ObservedAt time.Time `json:"observed_at"`
	ReceivedAt time.Time `json:"received_at"`
}

func encodeRisk(r *UserRisk) ([]byte, error) {
	return json.Marshal(storedRisk{
		Level:      r.Level.String(),
		Reasons:    r.Reasons,
		Source:     r.Source,
		EventID:    r.EventID,
		ObservedAt: r.ObservedAt,
		ReceivedAt: r.ReceivedAt,
	})
}

func decodeRisk(user string, b []byte) (UserRisk, error) {
	var s storedRisk
	if err := json.Unmarshal(b, &s); err != nil {
		return UserRisk{}, err
	}
	l, ok := ParseRiskLevel(s.Level)
	if !ok {
		return UserRisk{}, fmt.Errorf("unknown risk level %q", s.Level)
	}
	return UserRisk{
		User:       user,
		Level:      l,
		Reasons:    s.Reasons,
		Source:     s.Source,
		EventID:    s.EventID,
		ObservedAt: s.ObservedAt,
		ReceivedAt: s.ReceivedAt,
	}, nil
}

func encodeExpiry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

func decodeExpiry(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
}

// Revocations (schema 1, added later; created when missing):
//
//	revocations: key("s", session) | key("u", user) | key("d", ca, id) → JSON storedRevocation
//	cursors:     name → value
var (
	bucketRevocations = []byte("revocations")
	bucketCursors     = []byte("cursors")
)

func revSessionKey(id string) []byte  { return joinKeyParts("s", id) }
func revUserKey(user string) []byte   { return joinKeyParts("u", user) }
func revDeviceKey(k DeviceKey) []byte { return joinKeyParts("d", k.CA, k.ID) }

type storedRevocation struct {
	Kind       string    `json:"kind"`
	Session    string    `json:"session,omitempty"`
	User       string    `json:"user,omitempty"`
	DeviceCA   string    `json:"device_ca,omitempty"`
	DeviceID   string    `json:"device_id,omitempty"`
	Before     time.Time `json:"before"`
	Reasons    []string  `json:"reasons,omitempty"`
	Source     string    `json:"source"`
	EventID    string    `json:"event_id"`
	ObservedAt time.Time `json:"observed_at"`
	ReceivedAt time.Time `json:"received_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
}

func encodeRevocation(r *Revocation) ([]byte, error) {
	return json.Marshal(storedRevocation{
		Kind: r.Kind.String(), Session: r.Session, User: r.User,
		DeviceCA: r.Device.CA, DeviceID: r.Device.ID, Before: r.Before, Reasons: r.Reasons,
		Source: r.Source, EventID: r.EventID, ObservedAt: r.ObservedAt, ReceivedAt: r.ReceivedAt,
		ExpiresAt: r.ExpiresAt,
	})
}

func decodeRevocation(b []byte) (Revocation, error) {
	var s storedRevocation
	if err := json.Unmarshal(b, &s); err != nil {
		return Revocation{}, err
	}
	k, ok := ParseRevocationKind(s.Kind)
	if !ok {
		return Revocation{}, fmt.Errorf("unknown revocation kind %q", s.Kind)
	}
	return Revocation{
		Kind: k, Session: s.Session, User: s.User, Device: DeviceKey{CA: s.DeviceCA, ID: s.DeviceID},
		Before: s.Before, Reasons: s.Reasons, Source: s.Source, EventID: s.EventID,
		ObservedAt: s.ObservedAt, ReceivedAt: s.ReceivedAt, ExpiresAt: s.ExpiresAt,
	}, nil
}

// loadRevocations reads the revocations bucket into memory, dropping
// expired session records.
func (db *DB) loadRevocations(tx *bolt.Tx, now time.Time) error {
	sess := map[*revShard[string]]map[string]*Revocation{}
	users := map[*revShard[string]]map[string]*Revocation{}
	devs := map[*revShard[DeviceKey]]map[DeviceKey]*Revocation{}
	var expired [][]byte
	b := tx.Bucket(bucketRevocations)
	err := b.ForEach(func(k, v []byte) error {
		r, err := decodeRevocation(v)
		if err != nil {
			return fmt.Errorf("revocation %x: %w", k, err)
		}
		switch r.Kind {
		case RevokeSession:
			if !r.ExpiresAt.After(now) {
				expired = append(expired, slices.Clone(k))
				return nil
			}
			cowPut(&db.revs.sessions[userShardOf(r.Session)], sess, r.Session, &r)
		case RevokeUser:
			cowPut(&db.revs.users[userShardOf(r.User)], users, r.User, &r)
		case RevokeDevice:
			cowPut(&db.revs.devices[deviceShardOf(r.Device)], devs, r.Device, &r)
		}
		db.revs.n.Add(1)
		return nil
	})
	if err != nil {
		return err
	}
	for s, m := range sess {
		s.m.Store(&m)
	}
	for s, m := range users {
		s.m.Store(&m)
	}
	for s, m := range devs {
		s.m.Store(&m)
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

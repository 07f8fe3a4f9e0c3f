package posture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A Batch is a set of writes of different kinds committed in one
// transaction: all of it is durable, or none. Feeds whose one delivery
// carries several kinds of events (an Okta hook, an SSF poll) use it so
// that a reply or an acknowledgement covers everything.
type Batch struct {
	// Guards are recorded even when no write carries them, so that a
	// delivery that changed nothing (an event about an unknown subject)
	// is still remembered (see [Guard]). Each is [Applied] when recorded
	// now, [Duplicate] when it was seen before.
	Guards      []Guard
	Postures    []PostureEvent
	Risks       []RiskEvent
	Revocations []RevocationEvent
	Clears      []PostureClear
	// Cursor, when set, is saved with the events, so that a poller that
	// resumes from it never skips an event it did not store.
	Cursor *Cursor
	// DedupTTL, when longer than the store's, is how long the batch's
	// event ids are remembered (SSF keeps jti values for 7 days).
	DedupTTL time.Duration
}

// A PostureClear removes one source's record about a device: the source
// has withdrawn its objection (an SSF device became compliant again). The
// record is removed only if it was observed in an earlier second than
// ObservedAt; otherwise the clear is [OutOfOrder]: on a tie the record,
// the more restrictive of the two, stays.
type PostureClear struct {
	Key        DeviceKey
	Source     string
	EventID    string
	ObservedAt time.Time
	Guard      Guard // see [PostureEvent.Guard]
}

// A Cursor is a named position a poller saves (a System Log next link).
type Cursor struct {
	Name  string
	Value string
}

// Result is what the store did with each event of a [Batch], per kind, in
// batch order.
type Result struct {
	Guards      []Outcome
	Postures    []Outcome
	Risks       []Outcome
	Revocations []Outcome
	Clears      []Outcome
}

// Apply commits a batch with the guarantees of [DB.ApplyPosture]: it
// returns once everything is durable (or nothing is).
func (db *DB) Apply(ctx context.Context, b *Batch) (Result, error) {
	for i := range b.Postures {
		e := &b.Postures[i]
		p := &e.Posture
		if e.Key.CA == "" || e.Key.ID == "" || p.Source == "" || p.EventID == "" || p.ObservedAt.IsZero() {
			return Result{}, fmt.Errorf("%w: posture event %d lacks a device CA, device id, source, event id or observed time", ErrInvalidEvent, i)
		}
	}
	for i := range b.Risks {
		r := &b.Risks[i].Risk
		if r.User == "" || r.Source == "" || r.EventID == "" || r.ObservedAt.IsZero() {
			return Result{}, fmt.Errorf("%w: risk event %d lacks a user, source, event id or observed time", ErrInvalidEvent, i)
		}
		r.User = strings.ToLower(r.User)
	}
	if err := checkRevocations(b.Revocations); err != nil {
		return Result{}, err
	}
	for i, c := range b.Clears {
		if c.Key.CA == "" || c.Key.ID == "" || c.Source == "" || c.EventID == "" || c.ObservedAt.IsZero() {
			return Result{}, fmt.Errorf("%w: clear %d lacks a device CA, device id, source, event id or observed time", ErrInvalidEvent, i)
		}
	}
	if b.Cursor != nil && b.Cursor.Name == "" {
		return Result{}, fmt.Errorf("%w: cursor without a name", ErrInvalidEvent)
	}
	for i, g := range b.Guards {
		if g.Issuer == "" || g.ID == "" {
			return Result{}, fmt.Errorf("%w: guard %d lacks an issuer or id", ErrInvalidEvent, i)
		}
	}
	out, err := db.submit(ctx, &request{
		guards:   b.Guards,
		postures: b.Postures, risks: b.Risks, revs: b.Revocations, clears: b.Clears,
		cursor: b.Cursor, dedupTTL: b.DedupTTL,
	})
	if err != nil {
		return Result{}, err
	}
	var res Result
	n := len(b.Guards)
	res.Guards, out = out[:n:n], out[n:]
	n = len(b.Postures)
	res.Postures, out = out[:n:n], out[n:]
	n = len(b.Risks)
	res.Risks, out = out[:n:n], out[n:]
	n = len(b.Revocations)
	res.Revocations, res.Clears = out[:n:n], out[n:]
	return res, nil
}

// Cursor returns the value last saved under name, or "".
func (db *DB) Cursor(name string) string {
	db.cursorMu.RLock()
	defer db.cursorMu.RUnlock()
	return db.cursors[name]
}

// SetCursor saves a cursor on its own.
func (db *DB) SetCursor(ctx context.Context, name, value string) error {
	_, err := db.Apply(ctx, &Batch{Cursor: &Cursor{Name: name, Value: value}})
	return err
}

// ClearRisk forgets the user's risk record, as an administrator does after
// an investigation. It emits a [RiskChanged] change. An event observed
// before the clear that arrives later sets the risk again.
func (db *DB) ClearRisk(ctx context.Context, user string) (Outcome, error) {
	user = strings.ToLower(user)
	if user == "" {
		return 0, fmt.Errorf("%w: no user", ErrInvalidEvent)
	}
	out, err := db.submit(ctx, &request{clearRisks: []string{user}})
	if err != nil {
		return 0, err
	}
	return out[0], nil
}

// Revoke stores one revocation made by hand. It fills Source ("admin"
// when empty), EventID (random when empty) and ObservedAt (now when zero).
func (db *DB) Revoke(ctx context.Context, r Revocation) (Outcome, error) {
	if r.Source == "" {
		r.Source = "admin"
	}
	if r.EventID == "" {
		var b [16]byte
		rand.Read(b[:])
		r.EventID = hex.EncodeToString(b[:])
	}
	if r.ObservedAt.IsZero() {
		r.ObservedAt = db.now()
	}
	out, err := db.ApplyRevocations(ctx, []RevocationEvent{{Revocation: r}})
	if err != nil {
		return 0, err
	}
	return out[0], nil
}

func checkRevocations(batch []RevocationEvent) error {
	for i := range batch {
		r := &batch[i].Revocation
		r.User = strings.ToLower(r.User)
		ok := r.Source != "" && r.EventID != "" && !r.ObservedAt.IsZero()
		switch r.Kind {
		case RevokeSession:
			ok = ok && r.Session != ""
		case RevokeUser:
			ok = ok && r.User != ""
		case RevokeDevice:
			ok = ok && r.Device.CA != "" && r.Device.ID != ""
		default:
			ok = false
		}
		if !ok {
			return fmt.Errorf("%w: revocation %d lacks a kind, its subject, a source, an event id or an observed time", ErrInvalidEvent, i)
		}
	}
	return nil
}

func (db *DB) applyRevocationLocked(tx *txn, st *txState, expiry time.Time, e *RevocationEvent) (Outcome, error) {
	r := e.Revocation
	if dup, err := db.seenLocked(tx, st, expiry, dedupKey(r.Source, r.EventID)); dup || err != nil {
		return Duplicate, err
	}
	r.ObservedAt = r.ObservedAt.Round(0).UTC()
	if r.Before.IsZero() {
		r.Before = r.ObservedAt
	}
	r.Before = r.Before.Round(0).UTC()
	r.ReceivedAt = st.now
	var key []byte
	change := Change{Kind: RevocationChanged, User: r.User, At: st.now}
	switch r.Kind {
	case RevokeSession:
		old, ok := st.revSessions[r.Session]
		if !ok {
			old = db.revs.sessions[userShardOf(r.Session)].load()[r.Session]
		}
		if old != nil {
			return OutOfOrder, nil
		}
		r.ExpiresAt = st.now.Add(db.revTTL)
		st.revSessions[r.Session] = &r
		key = revSessionKey(r.Session)
		change.Session = r.Session
	case RevokeUser:
		old, ok := st.revUsers[r.User]
		if !ok {
			old = db.revs.users[userShardOf(r.User)].load()[r.User]
		}
		if old != nil && !r.Before.After(old.Before) {
			return OutOfOrder, nil
		}
		st.revUsers[r.User] = &r
		key = revUserKey(r.User)
	case RevokeDevice:
		old, ok := st.revDevices[r.Device]
		if !ok {
			old = db.revs.devices[deviceShardOf(r.Device)].load()[r.Device]
		}
		if old != nil && !r.Before.After(old.Before) {
			return OutOfOrder, nil
		}
		st.revDevices[r.Device] = &r
		key = revDeviceKey(r.Device)
		dk := r.Device
		change.Device = &dk
	}
	v, err := encodeRevocation(&r)
	if err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketRevocations).Put(key, v); err != nil {
		return 0, err
	}
	st.changes = append(st.changes, change)
	return Applied, nil
}

func (db *DB) applyClearLocked(tx *txn, st *txState, expiry time.Time, c *PostureClear) (Outcome, error) {
	if dup, err := db.seenLocked(tx, st, expiry, dedupKey(c.Source, c.EventID)); dup || err != nil {
		return Duplicate, err
	}
	cur, ok := st.devices[c.Key]
	if !ok {
		cur = db.Device(c.Key)
	}
	if cur == nil {
		return OutOfOrder, nil
	}
	i, found := slices.BinarySearchFunc(cur.Records, c.Source, func(r Posture, s string) int { return strings.Compare(r.Source, s) })
	// A clear withdraws an objection: it is the less restrictive report,
	// so it loses a tie (same second) as well as to a later record.
	if !found || compareObserved(cur.Records[i].ObservedAt, c.ObservedAt) >= 0 {
		return OutOfOrder, nil
	}
	if err := tx.Bucket(bucketDevices).Delete(deviceRecordKey(c.Key, c.Source)); err != nil {
		return 0, err
	}
	var nd *Device
	if len(cur.Records) > 1 {
		nd = &Device{Key: c.Key, Records: slices.Delete(slices.Clone(cur.Records), i, i+1)}
	}
	st.devices[c.Key] = nd
	key := c.Key
	st.changes = append(st.changes, Change{Kind: DeviceChanged, Device: &key, At: st.now})
	return Applied, nil
}

func (db *DB) clearRiskLocked(tx *txn, st *txState, user string) (Outcome, error) {
	old, ok := st.users[user]
	if !ok {
		old = db.Risk(user)
	}
	if old == nil {
		return OutOfOrder, nil
	}
	if err := tx.Bucket(bucketUsers).Delete([]byte(user)); err != nil {
		return 0, err
	}
	st.users[user] = nil
	st.changes = append(st.changes, Change{Kind: RiskChanged, User: user, At: st.now})
	return Applied, nil
}

// sweepRevocationsLocked forgets expired session revocations.
func (db *DB) sweepRevocationsLocked(tx *txn, st *txState) error {
	b := tx.Bucket(bucketRevocations)
	for i := range db.revs.sessions {
		for id, r := range db.revs.sessions[i].load() {
			if r.ExpiresAt.After(st.now) {
				continue
			}
			if _, staged := st.revSessions[id]; staged {
				continue
			}
			if err := b.Delete(revSessionKey(id)); err != nil {
				return err
			}
			st.revSessions[id] = nil
		}
	}
	return nil
}

// publishRevocationsLocked swaps in copies of the revocation shards that
// the transaction changed, and saves its cursors.
func (db *DB) publishRevocationsLocked(st *txState) {
	sess := map[*revShard[string]]map[string]*Revocation{}
	var delta int64
	for id, r := range st.revSessions {
		s := &db.revs.sessions[userShardOf(id)]
		_, had := s.load()[id]
		switch {
		case r == nil && had:
			delta--
		case r != nil && !had:
			delta++
		}
		cowPut(s, sess, id, r)
	}
	for s, m := range sess {
		s.m.Store(&m)
	}
	users := map[*revShard[string]]map[string]*Revocation{}
	for u, r := range st.revUsers {
		s := &db.revs.users[userShardOf(u)]
		if _, had := s.load()[u]; !had {
			delta++
		}
		cowPut(s, users, u, r)
	}
	for s, m := range users {
		s.m.Store(&m)
	}
	devs := map[*revShard[DeviceKey]]map[DeviceKey]*Revocation{}
	for k, r := range st.revDevices {
		s := &db.revs.devices[deviceShardOf(k)]
		if _, had := s.load()[k]; !had {
			delta++
		}
		cowPut(s, devs, k, r)
	}
	for s, m := range devs {
		s.m.Store(&m)
	}
	db.revs.n.Add(delta)
	if len(st.cursors) > 0 {
		db.cursorMu.Lock()
		for k, v := range st.cursors {
			db.cursors[k] = v
		}
		db.cursorMu.Unlock()
	}
}

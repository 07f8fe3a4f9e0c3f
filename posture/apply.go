package posture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrInvalidEvent is wrapped by the error of a write whose batch holds an
// event the store cannot key or order (no source, event id, device or
// user, or no observed time). Feeds validate before they write, so it
// means a bug in the feed.
var ErrInvalidEvent = errors.New("posture: invalid event")

// ApplyPosture stores a batch of device reports, all or nothing, and
// returns what happened to each event, in order. It returns only once the
// batch is durable on disk (or failed); concurrent calls are committed
// together in one transaction (group commit), so many small writers cost
// one disk sync. ctx is checked before the batch is queued; once queued, a
// batch is committed even if ctx ends, so a caller never leaves a write in
// doubt.
//
// Per (source, device) only a report observed in a later second replaces
// the stored record; one from an earlier second is [OutOfOrder]; one from
// the same second ties, and the record becomes the [MoreRestrictive] of
// the two ([OutOfOrder] if that changes nothing). An event whose (source, event id) was seen within
// the dedup window is a [Duplicate]. The store takes ownership of the
// slices in batch.
func (db *DB) ApplyPosture(ctx context.Context, batch []PostureEvent) ([]Outcome, error) {
	for i := range batch {
		e := &batch[i]
		p := &e.Posture
		if e.Key.CA == "" || e.Key.ID == "" || p.Source == "" || p.EventID == "" || p.ObservedAt.IsZero() {
			return nil, fmt.Errorf("%w: posture event %d lacks a device CA, device id, source, event id or observed time", ErrInvalidEvent, i)
		}
	}
	return db.submit(ctx, &request{postures: batch})
}

// ApplyRisk stores a batch of user risk verdicts, all or nothing, with the
// same guarantees as [DB.ApplyPosture]; ordering is per user. User ids are
// lower-cased.
func (db *DB) ApplyRisk(ctx context.Context, batch []RiskEvent) ([]Outcome, error) {
	for i := range batch {
		r := &batch[i].Risk
		if r.User == "" || r.Source == "" || r.EventID == "" || r.ObservedAt.IsZero() {
			return nil, fmt.Errorf("%w: risk event %d lacks a user, source, event id or observed time", ErrInvalidEvent, i)
		}
		r.User = strings.ToLower(r.User)
	}
	return db.submit(ctx, &request{risks: batch})
}

// ApplyRevocations stores a batch of revocations, all or nothing, with the
// same guarantees as [DB.ApplyPosture]. A user or device revocation
// replaces the stored one only if its Before is later ([OutOfOrder]
// otherwise); a session revocation is [OutOfOrder] when the session is
// already revoked. Each applied revocation emits a [RevocationChanged]
// change. User ids are lower-cased.
func (db *DB) ApplyRevocations(ctx context.Context, batch []RevocationEvent) ([]Outcome, error) {
	if err := checkRevocations(batch); err != nil {
		return nil, err
	}
	return db.submit(ctx, &request{revs: batch})
}

// request is one caller's batch waiting in the group commit queue.
type request struct {
	guards     []Guard
	postures   []PostureEvent
	risks      []RiskEvent
	revs       []RevocationEvent
	clears     []PostureClear
	clearRisks []string
	cursor     *Cursor
	dedupTTL   time.Duration // at least the store's

	outcomes []Outcome
	err      error
	rev      uint64        // a shared store's revision of the commit
	done     chan struct{} // closed once outcomes and err are set
	lead     chan struct{} // receives when this caller must lead the next group
}

// submit queues r and waits for it to be committed. The first caller to
// find no commit running leads: it takes the whole queue, commits it in one
// transaction and hands the lead to the oldest waiter, if any. No goroutine
// is started; callers do the work.
func (db *DB) submit(ctx context.Context, r *request) ([]Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if db.closed.Load() {
		return nil, ErrClosed
	}
	if r.size() == 0 && r.cursor == nil {
		return []Outcome{}, nil
	}
	r.done = make(chan struct{})
	r.lead = make(chan struct{}, 1)
	db.qmu.Lock()
	db.queue = append(db.queue, r)
	leader := !db.leading
	db.leading = true
	db.qmu.Unlock()
	if leader {
		db.lead()
	}
	for {
		select {
		case <-r.done:
			if r.rev > 0 {
				db.waitApplied(ctx, r.rev)
			}
			return r.outcomes, r.err
		case <-r.lead:
			db.lead()
		}
	}
}

// lead commits the queued group and passes the lead on.
func (db *DB) lead() {
	if db.shared != nil {
		// The lead passes on as soon as the group's writes are
		// computed (see commitShared). The next leader takes the queue
		// only once a commit may start, so writers arriving meanwhile
		// join its group instead of making small ones.
		db.inflight <- struct{}{}
		db.commitShared(db.takeQueue(), sync.OnceFunc(db.passLead))
		<-db.inflight
		return
	}
	db.commitGroup(db.takeQueue())
	db.passLead()
}

func (db *DB) takeQueue() []*request {
	db.qmu.Lock()
	defer db.qmu.Unlock()
	group := db.queue
	db.queue = nil
	return group
}

// passLead hands the lead to the oldest waiter, or gives it up.
func (db *DB) passLead() {
	db.qmu.Lock()
	if len(db.queue) == 0 {
		db.leading = false
		db.qmu.Unlock()
		return
	}
	next := db.queue[0]
	db.qmu.Unlock()
	next.lead <- struct{}{}
}

// txState is what one group transaction changes, published to memory only
// after it commits.
type txState struct {
	now     time.Time
	expiry  time.Time
	devices map[DeviceKey]*Device // nil value: every record removed
	users   map[string]*UserRisk  // nil value: record removed
	dedup   map[string]time.Time
	swept   []string
	changes []Change

	revSessions map[string]*Revocation // nil value: forgotten
	revUsers    map[string]*Revocation
	revDevices  map[DeviceKey]*Revocation
	cursors     map[string]string
}

func (db *DB) commitGroup(group []*request) {
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	defer func() {
		for _, r := range group {
			close(r.done)
		}
	}()
	if db.closed.Load() {
		for _, r := range group {
			r.err = ErrClosed
		}
		return
	}
	st := db.newTxState(db.now().Round(0).UTC())
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		tx := &txn{bolt: btx}
		for _, r := range group {
			if err := db.applyRequest(tx, st, r); err != nil {
				return err
			}
		}
		return db.sweepLocked(tx, st)
	})
	if err != nil {
		db.log.Error("posture store commit failed", "events", countEvents(group), "err", err)
		for _, r := range group {
			r.outcomes, r.err = nil, fmt.Errorf("posture: commit: %w", err)
		}
		return
	}
	db.publishLocked(st)
}

func (db *DB) newTxState(now time.Time) *txState {
	return &txState{
		now:     now,
		expiry:  now.Add(db.dedupTTL),
		devices: map[DeviceKey]*Device{},
		users:   map[string]*UserRisk{},
		dedup:   map[string]time.Time{},

		revSessions: map[string]*Revocation{},
		revUsers:    map[string]*Revocation{},
		revDevices:  map[DeviceKey]*Revocation{},
		cursors:     map[string]string{},
	}
}

func countEvents(group []*request) int {
	n := 0
	for _, r := range group {
		n += r.size()
	}
	return n
}

func (r *request) size() int {
	return len(r.guards) + len(r.postures) + len(r.risks) + len(r.revs) + len(r.clears) + len(r.clearRisks)
}

func (db *DB) applyRequest(tx *txn, st *txState, r *request) error {
	r.outcomes = make([]Outcome, 0, r.size())
	expiry := st.expiry
	if ttl := r.dedupTTL; ttl > db.dedupTTL {
		expiry = st.now.Add(ttl)
	}
	// guards says, per guard of this request, whether it was seen before
	// the request: then every write it guards is a duplicate.
	guards := map[Guard]bool{}
	replayed := func(g Guard) (bool, error) {
		if g == (Guard{}) {
			return false, nil
		}
		if seen, ok := guards[g]; ok {
			return seen, nil
		}
		seen, err := db.seenLocked(tx, st, expiry, guardKey(g))
		guards[g] = seen
		return seen, err
	}
	// each applies one write unless its guard was replayed.
	each := func(g Guard, apply func() (Outcome, error)) error {
		o := Duplicate
		seen, err := replayed(g)
		if err == nil && !seen {
			o, err = apply()
		}
		if err != nil {
			return err
		}
		r.outcomes = append(r.outcomes, o)
		return nil
	}
	for _, g := range r.guards {
		if err := each(g, func() (Outcome, error) { return Applied, nil }); err != nil {
			return err
		}
	}
	for i := range r.postures {
		e := &r.postures[i]
		if err := each(e.Guard, func() (Outcome, error) { return db.applyPostureLocked(tx, st, expiry, e) }); err != nil {
			return err
		}
	}
	for i := range r.risks {
		e := &r.risks[i]
		if err := each(e.Guard, func() (Outcome, error) { return db.applyRiskLocked(tx, st, expiry, e) }); err != nil {
			return err
		}
	}
	for i := range r.revs {
		e := &r.revs[i]
		if err := each(e.Guard, func() (Outcome, error) { return db.applyRevocationLocked(tx, st, expiry, e) }); err != nil {
			return err
		}
	}
	for i := range r.clears {
		e := &r.clears[i]
		if err := each(e.Guard, func() (Outcome, error) { return db.applyClearLocked(tx, st, expiry, e) }); err != nil {
			return err
		}
	}
	for _, u := range r.clearRisks {
		o, err := db.clearRiskLocked(tx, st, u)
		if err != nil {
			return err
		}
		r.outcomes = append(r.outcomes, o)
	}
	if c := r.cursor; c != nil {
		if err := tx.Bucket(bucketCursors).Put([]byte(c.Name), []byte(c.Value)); err != nil {
			return err
		}
		st.cursors[c.Name] = c.Value
	}
	return nil
}

// seenLocked reports whether the dedup key k is remembered, and remembers
// it otherwise.
func (db *DB) seenLocked(tx *txn, st *txState, expiry time.Time, k string) (bool, error) {
	if _, ok := st.dedup[k]; ok {
		return true, nil
	}
	if exp, ok := db.dedup[k]; ok && exp.After(st.now) {
		return true, nil
	}
	st.dedup[k] = expiry
	return false, tx.Bucket(bucketDedup).Put([]byte(k), encodeExpiry(expiry))
}

func (db *DB) applyPostureLocked(tx *txn, st *txState, expiry time.Time, e *PostureEvent) (Outcome, error) {
	p := e.Posture
	if dup, err := db.seenLocked(tx, st, expiry, dedupKey(p.Source, p.EventID)); dup || err != nil {
		return Duplicate, err
	}
	p.ObservedAt = p.ObservedAt.Round(0).UTC()
	if !p.GraceUntil.IsZero() {
		p.GraceUntil = p.GraceUntil.Round(0).UTC()
	}
	p.ReceivedAt = st.now

	cur, ok := st.devices[e.Key]
	if !ok {
		cur = db.Device(e.Key)
	}
	var recs []Posture
	i, found := 0, false
	if cur != nil {
		recs = cur.Records
		i, found = slices.BinarySearchFunc(recs, p.Source, func(r Posture, s string) int { return strings.Compare(r.Source, s) })
	}
	if found {
		old := &recs[i]
		switch compareObserved(p.ObservedAt, old.ObservedAt) {
		case -1:
			return OutOfOrder, nil
		case 0:
			m := MoreRestrictive(old, &p)
			if samePosture(&m, old) {
				return OutOfOrder, nil
			}
			m.EventID, m.ReceivedAt = p.EventID, p.ReceivedAt
			p = m
		}
	}
	// Copy on write: readers may hold cur.
	nd := &Device{Key: e.Key, Records: make([]Posture, 0, len(recs)+1)}
	nd.Records = append(nd.Records, recs[:i]...)
	nd.Records = append(nd.Records, p)
	if found {
		i++
	}
	nd.Records = append(nd.Records, recs[i:]...)

	v, err := encodePosture(&p)
	if err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketDevices).Put(deviceRecordKey(e.Key, p.Source), v); err != nil {
		return 0, err
	}
	st.devices[e.Key] = nd
	key := e.Key
	st.changes = append(st.changes, Change{Kind: DeviceChanged, Device: &key, At: st.now})
	return Applied, nil
}

func (db *DB) applyRiskLocked(tx *txn, st *txState, expiry time.Time, e *RiskEvent) (Outcome, error) {
	r := e.Risk
	if dup, err := db.seenLocked(tx, st, expiry, dedupKey(r.Source, r.EventID)); dup || err != nil {
		return Duplicate, err
	}
	r.ObservedAt = r.ObservedAt.Round(0).UTC()
	r.ReceivedAt = st.now
	old, ok := st.users[r.User]
	if !ok {
		old = db.Risk(r.User)
	}
	if old != nil {
		switch compareObserved(r.ObservedAt, old.ObservedAt) {
		case -1:
			return OutOfOrder, nil
		case 0:
			m := moreRestrictiveRisk(old, &r)
			if sameRisk(&m, old) {
				return OutOfOrder, nil
			}
			m.EventID, m.ReceivedAt = r.EventID, r.ReceivedAt
			r = m
		}
	}
	v, err := encodeRisk(&r)
	if err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketUsers).Put([]byte(r.User), v); err != nil {
		return 0, err
	}
	st.users[r.User] = &r
	st.changes = append(st.changes, Change{Kind: RiskChanged, User: r.User, At: st.now})
	return Applied, nil
}

// sweepLocked forgets expired dedup entries, at most once a minute.
func (db *DB) sweepLocked(tx *txn, st *txState) error {
	if st.now.Sub(db.lastSweep) < min(time.Minute, db.dedupTTL) {
		return nil
	}
	if err := db.sweepRevocationsLocked(tx, st); err != nil {
		return err
	}
	b := tx.Bucket(bucketDedup)
	for k, exp := range db.dedup {
		if exp.After(st.now) {
			continue
		}
		if err := b.Delete([]byte(k)); err != nil {
			return err
		}
		st.swept = append(st.swept, k)
	}
	return nil
}

// publishLocked makes a committed transaction visible to readers, then
// tells subscribers.
func (db *DB) publishLocked(st *txState) {
	db.publishRecordsLocked(st)
	db.publishDedupLocked(st)
	db.subs.publish(st.changes)
}

// publishRecordsLocked swaps the transaction's records into memory.
func (db *DB) publishRecordsLocked(st *txState) {
	for k, d := range st.devices {
		s := &db.devices[deviceShardOf(k)]
		s.mu.Lock()
		old := s.m[k]
		if d == nil {
			delete(s.m, k)
		} else {
			s.m[k] = d
		}
		s.mu.Unlock()
		switch {
		case d == nil:
			if old != nil {
				db.nDevices.Add(-1)
				db.nRecords.Add(-int64(len(old.Records)))
			}
		case old == nil:
			db.nDevices.Add(1)
			db.nRecords.Add(int64(len(d.Records)))
		default:
			db.nRecords.Add(int64(len(d.Records) - len(old.Records)))
		}
	}
	for u, r := range st.users {
		s := &db.users[userShardOf(u)]
		s.mu.Lock()
		old := s.m[u]
		if r == nil {
			delete(s.m, u)
		} else {
			s.m[u] = r
		}
		s.mu.Unlock()
		switch {
		case r == nil && old != nil:
			db.nUsers.Add(-1)
		case r != nil && old == nil:
			db.nUsers.Add(1)
		}
	}
	db.publishRevocationsLocked(st)
}

// publishDedupLocked remembers the transaction's event ids and forgets
// the swept ones.
func (db *DB) publishDedupLocked(st *txState) {
	for k, exp := range st.dedup {
		db.dedup[k] = exp
	}
	if st.swept != nil || st.now.Sub(db.lastSweep) >= min(time.Minute, db.dedupTTL) {
		for _, k := range st.swept {
			delete(db.dedup, k)
		}
		db.lastSweep = st.now
	}
}

package posture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// NewShared returns an empty store whose writes go to backend. The caller
// (the backend's package) fills it with [DB.Replace] and keeps it current
// with [DB.Install]; reads answer from memory exactly as the embedded
// store's do, never waiting on the backend.
func NewShared(backend Shared, opts Options) *DB {
	db := newDB(opts)
	db.shared = backend
	db.lastSweep = db.now()
	db.applied.ch = make(chan struct{})
	db.inflight = make(chan struct{}, maxInflightCommits)
	return db
}

// appliedRev tracks the revision up to which a shared store's copy is
// current, so a writer can wait to read its own write.
type appliedRev struct {
	mu  sync.Mutex    // guards rev and ch
	rev uint64        // highest revision installed
	ch  chan struct{} // closed and replaced when rev advances
}

func (a *appliedRev) advance(rev uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev <= a.rev {
		return
	}
	a.rev = rev
	close(a.ch)
	a.ch = make(chan struct{})
}

// Applied returns the highest revision installed in this replica's copy
// (0 for the embedded store).
func (db *DB) Applied() uint64 {
	db.applied.mu.Lock()
	defer db.applied.mu.Unlock()
	return db.applied.rev
}

// waitApplied waits until the copy holds revision rev, ctx ends, or a
// short bound passes: the write is durable either way, so the wait only
// gives a writer its own write to read.
func (db *DB) waitApplied(ctx context.Context, rev uint64) {
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	for {
		db.applied.mu.Lock()
		cur, ch := db.applied.rev, db.applied.ch
		db.applied.mu.Unlock()
		if cur >= rev {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		}
	}
}

// maxInflightCommits bounds how many groups one replica has in flight
// to the shared backend at once. One is best measured (BenchmarkIngest):
// the next group grows while one flies, and Redis runs scripts one at a
// time anyway; more make smaller groups, which cost more per event.
const maxInflightCommits = 1

// commitShared computes the group's writes from the copy, commits them to
// the shared backend, and on a conflict recomputes them from the records
// the backend returned. It holds commitMu while it computes, not while
// the backend works, so the copy installs the stream meanwhile and the
// last group's writers, waiting for their own writes to show, are
// answered; it calls handoff once the first computation is done, so that
// the next group can form. Groups in flight together are kept apart by
// the backend's conditions: one that meets another's writes conflicts
// and is recomputed on top of them. The copy itself changes
// only through Install, in the backend's order, so every replica applies
// the same sequence.
func (db *DB) commitShared(group []*request, handoff func()) {
	defer handoff()
	defer func() {
		for _, r := range group {
			close(r.done)
		}
	}()
	fail := func(err error) {
		for _, r := range group {
			r.outcomes, r.err = nil, err
		}
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		fail(ErrClosed)
		return
	}
	db.flying.Add(1)
	defer db.flying.Done()
	now := db.now().Round(0).UTC()
	overlay := map[string]Record{} // bucket and key → the backend's current record
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		if attempt > 0 {
			db.commitMu.Lock()
		}
		st := db.newTxState(now)
		db.seedLocked(st, overlay)
		tx := &txn{base: func(b Bucket, k string) uint64 { return db.baseRevLocked(overlay, b, k) }}
		var err error
		for _, r := range group {
			if err = db.applyRequest(tx, st, r); err != nil {
				break
			}
		}
		if err == nil {
			err = db.sweepLocked(tx, st)
		}
		if err != nil {
			db.commitMu.Unlock()
			fail(fmt.Errorf("posture: commit: %w", err))
			return
		}
		if len(tx.ops) == 0 {
			db.publishDedupLocked(st)
			db.commitMu.Unlock()
			return
		}
		db.commitMu.Unlock()
		handoff()
		ctx, cancel := context.WithTimeout(context.Background(), sharedCommitTimeout)
		rev, err := db.shared.Commit(ctx, tx.ops)
		cancel()
		var ce *ConflictError
		if errors.As(err, &ce) {
			for _, rec := range ce.Records {
				overlay[string(rune(rec.Bucket))+rec.Key] = rec
			}
			db.conflicts.Add(1)
			continue
		}
		if err != nil {
			db.log.Warn("posture store commit failed", "events", countEvents(group), "err", err)
			if !errors.Is(err, ErrUnavailable) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			fail(fmt.Errorf("posture: commit: %w", err))
			return
		}
		db.commitMu.Lock()
		db.publishDedupLocked(st)
		db.commitMu.Unlock()
		for _, r := range group {
			r.rev = rev
		}
		return
	}
	fail(fmt.Errorf("posture: commit: %w: still conflicting after %d attempts", ErrUnavailable, maxCommitAttempts))
}

// baseRevLocked returns the revision of the record a write of (b, k) was
// computed from: the backend's, when a conflict returned it, else the
// copy's.
func (db *DB) baseRevLocked(overlay map[string]Record, b Bucket, k string) uint64 {
	if rec, ok := overlay[string(rune(b))+k]; ok {
		return rec.Rev
	}
	switch b {
	case BucketDevices:
		parts, err := splitKeyParts([]byte(k), 3)
		if err != nil {
			return 0
		}
		if d := db.Device(DeviceKey{CA: parts[0], ID: parts[1]}); d != nil {
			if i, ok := findSource(d.Records, parts[2]); ok {
				return d.Records[i].Rev
			}
		}
	case BucketUsers:
		if r := db.Risk(k); r != nil {
			return r.Rev
		}
	case BucketRevocations:
		if r := db.revocationByKey(k); r != nil {
			return r.Rev
		}
	}
	return 0
}

func findSource(recs []Posture, source string) (int, bool) {
	return slices.BinarySearchFunc(recs, source, func(r Posture, s string) int { return strings.Compare(r.Source, s) })
}

// revocationByKey returns the copy's revocation stored under key k.
func (db *DB) revocationByKey(k string) *Revocation {
	parts, err := splitKeyParts([]byte(k), 2)
	if err == nil {
		switch parts[0] {
		case "s":
			return db.revs.sessions[userShardOf(parts[1])].load()[parts[1]]
		case "u":
			return db.revs.users[userShardOf(parts[1])].load()[parts[1]]
		}
		return nil
	}
	if parts, err = splitKeyParts([]byte(k), 3); err == nil && parts[0] == "d" {
		dk := DeviceKey{CA: parts[1], ID: parts[2]}
		return db.revs.devices[deviceShardOf(dk)].load()[dk]
	}
	return nil
}

// seedLocked starts a transaction from the backend's current records
// where a conflict showed the copy to lag, so the apply functions, which
// read st before the copy, decide on what is stored.
func (db *DB) seedLocked(st *txState, overlay map[string]Record) {
	for _, rec := range overlay {
		switch rec.Bucket {
		case BucketDedup:
			if rec.Value != nil {
				st.dedup[rec.Key] = st.expiry
			}
		case BucketDevices:
			key, p, ok := db.decodeDeviceRecord(rec)
			if !ok {
				continue
			}
			cur, seeded := st.devices[key]
			if !seeded {
				cur = db.Device(key)
			}
			st.devices[key] = withRecord(key, cur, rec.Key, p)
		case BucketUsers:
			r, ok := db.decodeRiskRecord(rec)
			if !ok {
				st.users[rec.Key] = nil
				continue
			}
			st.users[rec.Key] = r
		case BucketRevocations:
			r, ok := db.decodeRevocationRecord(rec)
			if !ok {
				continue
			}
			db.stageRevocation(st, rec.Key, r)
		}
	}
}

// stageRevocation puts r (nil: none) under its key in st.
func (db *DB) stageRevocation(st *txState, key string, r *Revocation) {
	parts, err := splitKeyParts([]byte(key), 2)
	if err == nil {
		switch parts[0] {
		case "s":
			st.revSessions[parts[1]] = r
		case "u":
			st.revUsers[parts[1]] = r
		}
		return
	}
	if parts, err = splitKeyParts([]byte(key), 3); err == nil && parts[0] == "d" {
		st.revDevices[DeviceKey{CA: parts[1], ID: parts[2]}] = r
	}
}

// withRecord returns a copy of cur (which may be nil) with source's record
// replaced by p, or removed when p is nil; nil when no record is left.
func withRecord(key DeviceKey, cur *Device, recKey string, p *Posture) *Device {
	parts, _ := splitKeyParts([]byte(recKey), 3)
	source := parts[2]
	var recs []Posture
	if cur != nil {
		recs = cur.Records
	}
	i, found := findSource(recs, source)
	out := make([]Posture, 0, len(recs)+1)
	out = append(out, recs[:i]...)
	if p != nil {
		out = append(out, *p)
	}
	if found {
		i++
	}
	out = append(out, recs[i:]...)
	if len(out) == 0 {
		return nil
	}
	return &Device{Key: key, Records: out}
}

// decodeDeviceRecord decodes a device record; p is nil for a deletion.
// A corrupt record is reported, counted and read as absent.
func (db *DB) decodeDeviceRecord(rec Record) (DeviceKey, *Posture, bool) {
	parts, err := splitKeyParts([]byte(rec.Key), 3)
	if err != nil {
		db.corruptLocked(rec, err)
		return DeviceKey{}, nil, false
	}
	key := DeviceKey{CA: parts[0], ID: parts[1]}
	if rec.Value == nil {
		return key, nil, true
	}
	p, err := decodePosture(parts[2], rec.Value)
	if err != nil {
		db.corruptLocked(rec, err)
		return key, nil, true
	}
	p.Rev = rec.Rev
	return key, &p, true
}

func (db *DB) decodeRiskRecord(rec Record) (*UserRisk, bool) {
	if rec.Value == nil || rec.Key == "" {
		return nil, rec.Key != ""
	}
	r, err := decodeRisk(rec.Key, rec.Value)
	if err != nil {
		db.corruptLocked(rec, err)
		return nil, false
	}
	r.Rev = rec.Rev
	return &r, true
}

func (db *DB) decodeRevocationRecord(rec Record) (*Revocation, bool) {
	if rec.Value == nil {
		return nil, true
	}
	r, err := decodeRevocation(rec.Value)
	if err != nil {
		db.corruptLocked(rec, err)
		return nil, false
	}
	// The key decides what the record is about: a value that names
	// another subject than its key is foreign, not trusted.
	var want []byte
	switch r.Kind {
	case RevokeSession:
		want = revSessionKey(r.Session)
	case RevokeUser:
		want = revUserKey(r.User)
	case RevokeDevice:
		want = revDeviceKey(r.Device)
	}
	if string(want) != rec.Key {
		db.corruptLocked(rec, errors.New("the record names another subject than its key"))
		return nil, false
	}
	r.Rev = rec.Rev
	return &r, true
}

// corruptLocked reports a record that cannot be read. Its value is not
// logged: it may be anything.
func (db *DB) corruptLocked(rec Record, err error) {
	db.corrupt.Add(1)
	db.log.Warn("ignoring a corrupt record in the shared store", "bucket", rec.Bucket.String(),
		"key_bytes", len(rec.Key), "rev", rec.Rev, "err", err)
}

// Install applies records a shared backend streamed, in its order, to
// the copy, and tells subscribers what changed. A record older than the
// copy's (a lower Rev) is skipped, so replaying part of the stream after
// a [DB.Replace] is harmless. Corrupt records are reported and ignored.
// rev is the revision the copy is now current to.
func (db *DB) Install(recs []Record, rev uint64) {
	db.commitMu.Lock()
	st := db.newTxState(db.now().Round(0).UTC())
	for _, rec := range recs {
		db.installLocked(st, rec)
	}
	db.publishRecordsLocked(st)
	db.subs.publish(st.changes)
	db.commitMu.Unlock()
	db.applied.advance(rev)
}

func (db *DB) installLocked(st *txState, rec Record) {
	switch rec.Bucket {
	case BucketDevices:
		key, p, ok := db.decodeDeviceRecord(rec)
		if !ok {
			return
		}
		cur, staged := st.devices[key]
		if !staged {
			cur = db.Device(key)
		}
		parts, _ := splitKeyParts([]byte(rec.Key), 3)
		if cur != nil {
			if i, found := findSource(cur.Records, parts[2]); found && cur.Records[i].Rev >= rec.Rev {
				return
			}
		}
		if p == nil && (cur == nil || !hasSource(cur, parts[2])) {
			return
		}
		st.devices[key] = withRecord(key, cur, rec.Key, p)
		k := key
		st.changes = append(st.changes, Change{Kind: DeviceChanged, Device: &k, At: st.now})
	case BucketUsers:
		r, ok := db.decodeRiskRecord(rec)
		if !ok {
			return
		}
		cur, staged := st.users[rec.Key]
		if !staged {
			cur = db.Risk(rec.Key)
		}
		if cur != nil && cur.Rev >= rec.Rev || cur == nil && r == nil {
			return
		}
		st.users[rec.Key] = r
		st.changes = append(st.changes, Change{Kind: RiskChanged, User: rec.Key, At: st.now})
	case BucketRevocations:
		r, ok := db.decodeRevocationRecord(rec)
		if !ok {
			return
		}
		cur := db.stagedRevocation(st, rec.Key)
		if cur != nil && cur.Rev >= rec.Rev || cur == nil && r == nil {
			return
		}
		db.stageRevocation(st, rec.Key, r)
		if r != nil {
			ch := Change{Kind: RevocationChanged, User: r.User, At: st.now}
			switch r.Kind {
			case RevokeSession:
				ch.Session = r.Session
			case RevokeDevice:
				dk := r.Device
				ch.Device = &dk
			}
			st.changes = append(st.changes, ch)
		}
	case BucketCursors:
		if rec.Value != nil {
			st.cursors[rec.Key] = string(rec.Value)
		}
	}
}

func hasSource(d *Device, source string) bool {
	_, ok := findSource(d.Records, source)
	return ok
}

func (db *DB) stagedRevocation(st *txState, key string) *Revocation {
	parts, err := splitKeyParts([]byte(key), 2)
	if err == nil {
		switch parts[0] {
		case "s":
			if r, ok := st.revSessions[parts[1]]; ok {
				return r
			}
		case "u":
			if r, ok := st.revUsers[parts[1]]; ok {
				return r
			}
		}
	} else if parts, err = splitKeyParts([]byte(key), 3); err == nil && parts[0] == "d" {
		if r, ok := st.revDevices[DeviceKey{CA: parts[1], ID: parts[2]}]; ok {
			return r
		}
	}
	return db.revocationByKey(key)
}

// Replace makes the copy exactly recs (a full load of the shared store),
// current to revision rev, and tells subscribers to re-evaluate
// everything. It is [DB.NewLoad], [Load.Add] and [Load.Commit] in one.
func (db *DB) Replace(recs []Record, rev uint64) {
	l := db.NewLoad(len(recs))
	l.Add(recs)
	l.Commit(rev)
}

// Corrupt returns how many records of the shared store could not be read
// and were ignored.
func (db *DB) Corrupt() int64 { return db.corrupt.Load() }

// Conflicts returns how many shared commits were retried after another
// writer changed their records.
func (db *DB) Conflicts() int64 { return db.conflicts.Load() }

package posture

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is wrapped by the error of a write that a shared backend
// could not store (Redis unreachable, timed out, or refusing writes while
// replicas resync). Nothing of the write was stored: the sender should
// retry later.
var ErrUnavailable = errors.New("posture: shared store unavailable")

// Bucket names a kind of stored record.
type Bucket uint8

const (
	// BucketDevices holds one record per (device, source); Key is
	// length-prefixed (CA, device id, source).
	BucketDevices Bucket = iota + 1
	// BucketUsers holds one risk record per user; Key is the user id.
	BucketUsers
	// BucketRevocations holds one record per revoked session, user or
	// device; Key is length-prefixed ("s", id), ("u", user) or ("d", CA, id).
	BucketRevocations
	// BucketCursors holds named poller positions; Key is the name.
	BucketCursors
	// BucketDedup holds remembered event ids until Expires; Key is
	// length-prefixed (source, event id) or a delivery guard.
	BucketDedup
)

var bucketNames = [...]string{"", "devices", "users", "revocations", "cursors", "dedup"}

// String returns the bucket's stable name.
func (b Bucket) String() string {
	if int(b) < len(bucketNames) && b != 0 {
		return bucketNames[b]
	}
	return "unknown"
}

// An Op is one write of a transaction handed to a [Shared] backend.
type Op struct {
	Bucket Bucket
	Key    string
	// Value is the record's encoding; nil deletes the record.
	Value []byte
	// Expect is the revision of the record the write was computed from
	// (0: the record was absent). The backend commits the transaction only
	// if every device, user and revocation op's Expect is the stored
	// revision; cursors are written unconditionally. For BucketDedup the
	// condition is that the key is not remembered.
	Expect uint64
	// Expires is when a BucketDedup key is forgotten.
	Expires time.Time
}

// A Record is one stored record as a [Shared] backend loads or streams
// it: Value is its encoding (nil: deleted), Rev the revision of the
// transaction that wrote it.
type Record struct {
	Bucket Bucket
	Key    string
	Value  []byte
	Rev    uint64
}

// A ConflictError is returned by [Shared.Commit] when a condition of the
// transaction did not hold: another replica wrote first, or the local copy
// lags. Records are the current state of the keys whose condition failed
// (Value nil when absent; for BucketDedup, present means remembered). The
// store recomputes the transaction from them and tries again.
type ConflictError struct {
	Records []Record
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("posture: %d records changed under the transaction", len(e.Records))
}

// Shared is a durable store that several replicas write: each keeps a full
// copy of the records in memory (a [DB] made by [NewShared]) and the
// backend keeps them current with [DB.Install] and [DB.Replace].
type Shared interface {
	// Commit stores ops atomically if their conditions hold (see [Op]),
	// and returns the revision the records were written at. It returns a
	// *ConflictError when a condition failed, and an error wrapping
	// [ErrUnavailable] when it could not reach the store; in both cases
	// nothing was written.
	Commit(ctx context.Context, ops []Op) (uint64, error)
	// Close releases the backend.
	Close() error
}

// maxCommitAttempts bounds the retries of a transaction that keeps
// meeting conflicts (each retry starts from the records the conflict
// returned, so two attempts settle nearly every race).
const maxCommitAttempts = 8

// sharedCommitTimeout bounds one commit's round trip to the backend.
const sharedCommitTimeout = 5 * time.Second

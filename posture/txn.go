package posture

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// txn is what the apply functions write through. For the embedded store
// it passes each write to the open bbolt transaction; for a shared store
// it records the writes as [Op]s, each with the revision of the record it
// was computed from, for [Shared.Commit].
type txn struct {
	bolt *bolt.Tx // embedded; nil for a shared store

	ops  []Op
	at   map[string]int // bucket and key → index in ops: the last write wins
	base func(Bucket, string) uint64
}

// txBucket is one bucket of a txn, with bbolt's Put and Delete.
type txBucket struct {
	t    *txn
	name []byte
}

// Bucket returns the named bucket.
func (t *txn) Bucket(name []byte) txBucket { return txBucket{t: t, name: name} }

// Put stores v under k.
func (b txBucket) Put(k, v []byte) error {
	if b.t.bolt != nil {
		return b.t.bolt.Bucket(b.name).Put(k, v)
	}
	b.t.record(bucketOf(b.name), string(k), bytes.Clone(v))
	return nil
}

// Delete removes k.
func (b txBucket) Delete(k []byte) error {
	if b.t.bolt != nil {
		return b.t.bolt.Bucket(b.name).Delete(k)
	}
	if bk := bucketOf(b.name); bk != BucketDedup { // a shared store expires them itself
		b.t.record(bk, string(k), nil)
	}
	return nil
}

func (t *txn) record(bk Bucket, key string, v []byte) {
	op := Op{Bucket: bk, Key: key, Value: v}
	if bk == BucketDedup {
		op.Expires, _ = decodeExpiry(v)
		op.Value = []byte{1}
	}
	id := string(rune(bk)) + key
	if i, ok := t.at[id]; ok {
		// A second write of the key in one transaction keeps the first's
		// condition: both were computed from the same stored record.
		op.Expect = t.ops[i].Expect
		t.ops[i] = op
		return
	}
	if bk != BucketCursors && bk != BucketDedup && t.base != nil {
		op.Expect = t.base(bk, key)
	}
	if t.at == nil {
		t.at = map[string]int{}
	}
	t.at[id] = len(t.ops)
	t.ops = append(t.ops, op)
}

func bucketOf(name []byte) Bucket {
	switch string(name) {
	case string(bucketDevices):
		return BucketDevices
	case string(bucketUsers):
		return BucketUsers
	case string(bucketRevocations):
		return BucketRevocations
	case string(bucketCursors):
		return BucketCursors
	case string(bucketDedup):
		return BucketDedup
	}
	return 0
}

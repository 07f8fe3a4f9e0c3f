package saml

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ReplayFile is the replay cache's file name in the state directory.
const ReplayFile = "saml-replay.db"

var bucketAssertions = []byte("assertions")

// maxReplayEntries bounds the cache: past it, logins are refused (fail
// closed) until entries expire. At most a few minutes of logins are kept.
const maxReplayEntries = 1 << 20

// ErrReplayFull is returned when the replay cache holds too many live
// entries to accept another.
var ErrReplayFull = errors.New("saml replay cache is full")

// A Replay remembers one-time ids (here: assertion ids) until they can no
// longer be accepted. [ReplayCache] keeps them in a file for one gateway;
// a store shared by replicas (state.redis) keeps them where every replica
// sees them, so that an assertion used on one is refused on the others.
type Replay interface {
	// Seen records key as used until expires (now is the caller's
	// clock) and reports whether it was already recorded and still live.
	// An error means the cache could not answer: the caller refuses the
	// login (fail closed).
	Seen(ctx context.Context, key string, expires, now time.Time) (bool, error)
}

// ReplayCache remembers the ids of accepted assertions until they can no
// longer be accepted, in a bbolt file, so that a restart does not reopen
// the replay window. It is safe for concurrent use; open it once per
// process (bbolt locks the file).
type ReplayCache struct {
	db      *bolt.DB
	mu      sync.Mutex
	inserts int
}

// OpenReplayCache opens (creating) the replay cache in dir.
func OpenReplayCache(dir string) (*ReplayCache, error) {
	db, err := bolt.Open(filepath.Join(dir, ReplayFile), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening saml replay cache: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketAssertions)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening saml replay cache: %w", err)
	}
	return &ReplayCache{db: db}, nil
}

// Close closes the file.
func (c *ReplayCache) Close() error { return c.db.Close() }

// ReplayKey is the replay cache key of an assertion id of the IdP named
// idp ("saml:corp"): both, so that ids are per provider.
func ReplayKey(idp, id string) string { return idp + "\x00" + id }

// Seen implements [Replay]. Keys are hashed, so entries have a fixed size
// whatever the IdP sends. A storage error is returned as such.
func (c *ReplayCache) Seen(_ context.Context, k string, expires, now time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(k))
	key := sum[:]
	var seen bool
	err := c.db.Update(func(tx *bolt.Tx) error {
		seen = false
		b := tx.Bucket(bucketAssertions)
		if v := b.Get(key); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now.Unix() {
			seen = true
			return nil
		}
		c.mu.Lock()
		c.inserts++
		sweep := c.inserts%256 == 0
		c.mu.Unlock()
		if sweep {
			if err := pruneExpired(b, now); err != nil {
				return err
			}
			if b.Stats().KeyN >= maxReplayEntries {
				return ErrReplayFull
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(expires.Unix()+1))
		return b.Put(key, v[:])
	})
	if err != nil {
		return false, err
	}
	return seen, nil
}

func pruneExpired(b *bolt.Bucket, now time.Time) error {
	var dead [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= now.Unix() {
			dead = append(dead, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

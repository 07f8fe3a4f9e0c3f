package posture

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the store's file inside its directory.
const FileName = "posture.db"

// DefaultDedupTTL is how long an event id is remembered.
const DefaultDedupTTL = 24 * time.Hour

// ErrClosed is returned by writes to a closed store.
var ErrClosed = errors.New("posture: store closed")

// Options tune [Open]. The zero value is usable.
type Options struct {
	// Logger receives lifecycle and failure messages; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DedupTTL is how long an event's (source, event id) is remembered
	// after it is received; a repeat within it is a duplicate. Default 24h.
	DedupTTL time.Duration
	// RevocationTTL is how long a revoked session id is remembered; it
	// must be longer than any session lives. Default 30 days.
	RevocationTTL time.Duration
}

// DB is the embedded posture store: every record in memory, persisted to a
// bbolt file. Reads ([DB.Device], [DB.Risk]) are safe for concurrent use,
// never wait for disk and allocate nothing. Writes are batched, atomic and
// durable before they return.
type DB struct {
	bolt      *bolt.DB // embedded; nil for a shared store
	shared    Shared   // shared; nil for the embedded store
	applied   appliedRev
	corrupt   atomic.Int64 // shared records that could not be read
	conflicts atomic.Int64
	// A shared store commits several groups at once: inflight bounds
	// them, and flying counts those Close must wait for.
	inflight chan struct{}
	flying   sync.WaitGroup
	log      *slog.Logger
	now      func() time.Time
	dedupTTL time.Duration
	revTTL   time.Duration

	devices [shardCount]deviceShard
	users   [shardCount]userShard

	nDevices atomic.Int64 // devices with at least one record
	nRecords atomic.Int64 // device records (one per device and source)
	nUsers   atomic.Int64

	// The group commit queue (see commit.go).
	qmu     sync.Mutex
	queue   []*request // mu protects queue and leading
	leading bool
	closed  atomic.Bool

	// commitMu is held by the leader of a group commit and by Close; it
	// guards dedup and lastSweep, which only the leader touches.
	commitMu  sync.Mutex
	dedup     map[string]time.Time // dedupKey → expiry
	lastSweep time.Time

	revs revIndex

	cursorMu sync.RWMutex // guards cursors
	cursors  map[string]string

	subs subscribers
}

const shardCount = 64

type deviceShard struct {
	mu sync.RWMutex // guards m; writers hold it only to swap pointers
	m  map[DeviceKey]*Device
}

type userShard struct {
	mu sync.RWMutex // guards m; writers hold it only to swap pointers
	m  map[string]*UserRisk
}

// newDB returns an empty store with opts' defaults applied, before it is
// given a place to keep its writes (a bbolt file, or a shared backend).
func newDB(opts Options) *DB {
	db := &DB{
		log:      opts.Logger,
		now:      opts.Now,
		dedupTTL: opts.DedupTTL,
		dedup:    map[string]time.Time{},
		revTTL:   opts.RevocationTTL,
		cursors:  map[string]string{},
	}
	if db.revTTL <= 0 {
		db.revTTL = DefaultRevocationTTL
	}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.dedupTTL <= 0 {
		db.dedupTTL = DefaultDedupTTL
	}
	for i := range db.devices {
		db.devices[i].m = map[DeviceKey]*Device{}
		db.users[i].m = map[string]*UserRisk{}
	}
	return db
}

// Open opens (creating if needed) the store in dir, loading every record
// into memory. The directory is created with mode 0700 and the file with
// 0600. Only one process may open a store at a time; Open fails after a
// few seconds if another holds it.
func Open(dir string, opts Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("posture: creating state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// As etcd does: the freelist is rebuilt at open instead of written
		// on every commit, which saves a page write per commit.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("posture: opening %s: %w", path, err)
	}
	db := newDB(opts)
	db.bolt = bdb
	if err := db.load(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("posture: loading %s: %w", path, err)
	}
	db.lastSweep = db.now()
	db.log.Info("posture store opened", "path", path, "devices", db.nDevices.Load(),
		"device_records", db.nRecords.Load(), "users", db.nUsers.Load(), "dedup_entries", len(db.dedup))
	return db, nil
}

// load creates the buckets if needed, reads every record into memory and
// drops expired dedup entries.
func (db *DB) load() error {
	now := db.now()
	return db.bolt.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("unsupported schema %q (want %s)", v, schemaVersion)
		}
		for _, name := range [][]byte{bucketDevices, bucketUsers, bucketDedup, bucketRevocations, bucketCursors} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		devs := map[DeviceKey]*Device{}
		err = tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			parts, err := splitKeyParts(k, 3)
			if err != nil {
				return fmt.Errorf("device key %x: %w", k, err)
			}
			p, err := decodePosture(parts[2], v)
			if err != nil {
				return fmt.Errorf("device %s/%s source %s: %w", parts[0], parts[1], parts[2], err)
			}
			key := DeviceKey{CA: parts[0], ID: parts[1]}
			d := devs[key]
			if d == nil {
				d = &Device{Key: key}
				devs[key] = d
			}
			d.Records = append(d.Records, p)
			return nil
		})
		if err != nil {
			return err
		}
		for k, d := range devs {
			slices.SortFunc(d.Records, func(a, b Posture) int { return strings.Compare(a.Source, b.Source) })
			db.devices[deviceShardOf(k)].m[k] = d
			db.nDevices.Add(1)
			db.nRecords.Add(int64(len(d.Records)))
		}
		err = tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			r, err := decodeRisk(string(k), v)
			if err != nil {
				return fmt.Errorf("user %q: %w", k, err)
			}
			db.users[userShardOf(r.User)].m[r.User] = &r
			db.nUsers.Add(1)
			return nil
		})
		if err != nil {
			return err
		}
		if err := db.loadRevocations(tx, now); err != nil {
			return err
		}
		err = tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			db.cursors[string(k)] = string(v)
			return nil
		})
		if err != nil {
			return err
		}
		var expired [][]byte
		err = tx.Bucket(bucketDedup).ForEach(func(k, v []byte) error {
			exp, ok := decodeExpiry(v)
			if !ok || !exp.After(now) {
				expired = append(expired, slices.Clone(k))
				return nil
			}
			db.dedup[string(k)] = exp
			return nil
		})
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketDedup)
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close waits for a running commit and closes the file. Writes after Close
// fail with [ErrClosed]; reads keep answering from memory.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	if db.shared != nil {
		// A group computes under commitMu and joins flying before it
		// lets go of it; once closed is set no group starts, so after
		// one pass through commitMu flying only shrinks.
		db.commitMu.Lock()
		db.commitMu.Unlock()
		db.flying.Wait()
	}
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	db.subs.closeAll()
	if db.shared != nil {
		return db.shared.Close()
	}
	return db.bolt.Close()
}

// Device returns everything known about the device, or nil. The result is
// immutable and may be kept. Device allocates nothing.
func (db *DB) Device(k DeviceKey) *Device {
	s := &db.devices[deviceShardOf(k)]
	s.mu.RLock()
	d := s.m[k]
	s.mu.RUnlock()
	return d
}

// Risk returns the latest risk verdict about user (lower-cased), or nil.
// The result is immutable and may be kept. Risk allocates nothing.
func (db *DB) Risk(user string) *UserRisk {
	s := &db.users[userShardOf(user)]
	s.mu.RLock()
	r := s.m[user]
	s.mu.RUnlock()
	return r
}

// Stats are the store's sizes, for metrics.
type Stats struct {
	Devices        int64 // devices with at least one record
	DeviceRecords  int64 // (device, source) records
	Users          int64 // users with a risk record
	ChangesDropped int64 // changes not delivered to a full subscriber
}

// Stats returns the store's current sizes.
func (db *DB) Stats() Stats {
	return Stats{
		Devices:        db.nDevices.Load(),
		DeviceRecords:  db.nRecords.Load(),
		Users:          db.nUsers.Load(),
		ChangesDropped: db.subs.dropped.Load(),
	}
}

// DeviceKeys returns the keys of every device, in no particular order.
func (db *DB) DeviceKeys() []DeviceKey {
	out := make([]DeviceKey, 0, db.nDevices.Load())
	for i := range db.devices {
		s := &db.devices[i]
		s.mu.RLock()
		for k := range s.m {
			out = append(out, k)
		}
		s.mu.RUnlock()
	}
	return out
}

// RangeDevices calls f for every device until f returns false. It holds a
// shard's read lock while calling f, so f must not write to the store.
func (db *DB) RangeDevices(f func(*Device) bool) {
	for i := range db.devices {
		s := &db.devices[i]
		s.mu.RLock()
		for _, d := range s.m {
			if !f(d) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}

// RangeRisks calls f for every user risk record until f returns false. It
// holds a shard's read lock while calling f, so f must not write to the
// store.
func (db *DB) RangeRisks(f func(*UserRisk) bool) {
	for i := range db.users {
		s := &db.users[i]
		s.mu.RLock()
		for _, r := range s.m {
			if !f(r) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}

// FNV-1a, written out so that hashing a key allocates nothing.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func deviceShardOf(k DeviceKey) int {
	h := fnvString(fnvOffset, k.CA)
	h ^= 0xff
	h *= fnvPrime
	h = fnvString(h, k.ID)
	return int(h % shardCount)
}

func userShardOf(u string) int {
	return int(fnvString(fnvOffset, u) % shardCount)
}

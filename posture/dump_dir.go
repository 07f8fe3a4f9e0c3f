package posture

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotEmpty is returned by an import into a store that holds records,
// unless forced.
var ErrNotEmpty = errors.New("posture: the target store is not empty")

// dumpBuckets are the embedded store's record buckets, in dump order.
var dumpBuckets = []struct {
	b    Bucket
	name []byte
}{
	{BucketDevices, bucketDevices}, {BucketUsers, bucketUsers}, {BucketRevocations, bucketRevocations},
	{BucketCursors, bucketCursors}, {BucketDedup, bucketDedup},
}

func openDumpFile(dir string, readOnly bool) (*bolt.DB, error) {
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("posture: opening %s (is a gateway running on it?): %w", path, err)
	}
	return db, nil
}

// ExportDir passes every record of the embedded store in dir to yield,
// bucket by bucket; expired event ids are left out. The gateway using
// the store must be stopped (the file is locked while it runs).
func ExportDir(dir string, now time.Time, yield func(Entry) error) error {
	db, err := openDumpFile(dir, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, d := range dumpBuckets {
			b := tx.Bucket(d.name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, v []byte) error {
				e := Entry{Bucket: d.b, Key: string(k)}
				if d.b == BucketDedup {
					exp, ok := decodeExpiry(v)
					if !ok || !exp.After(now) {
						return nil
					}
					e.Expires = exp
				} else {
					e.Value = v
				}
				return yield(e)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// importBatch is how many records one bbolt transaction of an import
// writes.
const importBatch = 10000

// ImportDir writes every entry next returns (until io.EOF) into the
// embedded store in dir, creating it if needed, and returns how many it
// wrote. A store that holds records is refused with [ErrNotEmpty] unless
// force; then entries replace the records with their keys and other
// records stay. Entries are written in batches, each atomic: an import
// that fails part way can be run again with force. Expired event ids are
// skipped. The gateway must be stopped.
func ImportDir(dir string, now time.Time, force bool, next func() (Entry, error)) (int, error) {
	created, err := Open(dir, Options{}) // creates the file and its buckets
	if err != nil {
		return 0, err
	}
	if err := created.Close(); err != nil {
		return 0, err
	}
	db, err := openDumpFile(dir, false)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if !force {
		err := db.View(func(tx *bolt.Tx) error {
			for _, d := range dumpBuckets {
				if k, _ := tx.Bucket(d.name).Cursor().First(); k != nil {
					return fmt.Errorf("%w: its %s bucket holds records (use --force to import over them)", ErrNotEmpty, d.b)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	n, done := 0, false
	for !done {
		err := db.Update(func(tx *bolt.Tx) error {
			for range importBatch {
				e, err := next()
				if err == io.EOF {
					done = true
					return nil
				}
				if err != nil {
					return err
				}
				name := bucketNameOf(e.Bucket)
				v := e.Value
				if e.Bucket == BucketDedup {
					if !e.Expires.After(now) {
						continue
					}
					v = encodeExpiry(e.Expires)
				}
				if err := tx.Bucket(name).Put([]byte(e.Key), v); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func bucketNameOf(b Bucket) []byte {
	for _, d := range dumpBuckets {
		if d.b == b {
			return d.name
		}
	}
	return nil
}

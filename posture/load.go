package posture

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"
)

// A Load builds a shared store's copy from a full read of its backend,
// for [DB.Replace] and for backends that read in parallel: [Load.Add] may
// be called from several goroutines at once, each decoding its own part
// of the records, and [Load.Commit] swaps the result in whole. Readers
// see the old copy until Commit; nothing is published before.
type Load struct {
	db      *DB
	devices [shardCount]loadShard

	mu     sync.Mutex // guards others
	others []Record   // users, revocations and cursors, installed at Commit
}

type loadShard struct {
	mu      sync.Mutex // guards m and records
	m       map[DeviceKey]*Device
	records int
}

// NewLoad starts a load into db, a store made by [NewShared]; devices is
// how many device records the backend holds (a hint for sizing).
func (db *DB) NewLoad(devices int) *Load {
	l := &Load{db: db}
	per := devices/shardCount + devices/(8*shardCount) + 1
	for i := range l.devices {
		l.devices[i].m = make(map[DeviceKey]*Device, per)
	}
	return l
}

// Add decodes recs into the load. A backend may return a record twice
// (a scan racing a write): the higher revision wins. Corrupt records are
// reported, counted and skipped. Add is safe for concurrent use.
func (l *Load) Add(recs []Record) {
	// Device keys repeat their CA and source, and records their platform
	// and OS version, across most of a fleet: share one string each
	// instead of holding a million copies.
	var in interner
	var others []Record
	for _, rec := range recs {
		if rec.Bucket != BucketDevices {
			others = append(others, rec)
			continue
		}
		if rec.Value == nil {
			continue
		}
		key, source, ok := in.deviceKey(rec.Key)
		if !ok {
			l.db.corruptLocked(rec, errBadKey)
			continue
		}
		p, err := decodePosture(source, rec.Value)
		if err != nil {
			l.db.corruptLocked(rec, err)
			continue
		}
		p.Rev = rec.Rev
		p.Platform = in.str(p.Platform)
		p.OSVersion = in.str(p.OSVersion)
		l.put(key, &p)
	}
	if len(others) > 0 {
		l.mu.Lock()
		l.others = append(l.others, others...)
		l.mu.Unlock()
	}
}

// put adds one device record to its shard.
func (l *Load) put(key DeviceKey, p *Posture) {
	s := &l.devices[deviceShardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.m[key]
	if d == nil {
		// One allocation for a device and its first record: most
		// devices have one source.
		one := &struct {
			d Device
			r [1]Posture
		}{d: Device{Key: key}, r: [1]Posture{*p}}
		one.d.Records = one.r[:1:1]
		s.m[key] = &one.d
		s.records++
		return
	}
	i, found := findSource(d.Records, p.Source)
	if found {
		if d.Records[i].Rev < p.Rev {
			d.Records[i] = *p
		}
		return
	}
	d.Records = slices.Insert(d.Records, i, *p)
	s.records++
}

// Commit makes the copy exactly what was added, current to revision rev,
// and tells subscribers to re-evaluate everything. The event-id cache is
// dropped too: the backend remembers what it holds.
func (l *Load) Commit(rev uint64) {
	db := l.db
	db.commitMu.Lock()
	var devices, records int
	for i := range db.devices {
		ls := &l.devices[i]
		devices += len(ls.m)
		records += ls.records
		s := &db.devices[i]
		s.mu.Lock()
		s.m, ls.m = ls.m, nil
		s.mu.Unlock()
		u := &db.users[i]
		u.mu.Lock()
		u.m = map[string]*UserRisk{}
		u.mu.Unlock()
		db.revs.sessions[i].m.Store(nil)
		db.revs.users[i].m.Store(nil)
		db.revs.devices[i].m.Store(nil)
	}
	db.nDevices.Store(int64(devices))
	db.nRecords.Store(int64(records))
	db.nUsers.Store(0)
	db.revs.n.Store(0)
	db.dedup = map[string]time.Time{}
	db.cursorMu.Lock()
	db.cursors = map[string]string{}
	db.cursorMu.Unlock()

	st := db.newTxState(db.now().Round(0).UTC())
	for _, rec := range l.others {
		db.installLocked(st, rec)
	}
	l.others = nil
	db.publishRecordsLocked(st)
	db.subs.publish([]Change{{Lost: true, At: st.now}})
	db.commitMu.Unlock()
	db.applied.mu.Lock()
	db.applied.rev = 0 // a new generation may count from 1 again
	db.applied.mu.Unlock()
	db.applied.advance(rev)
}

// maxInterned bounds an interner: values past it are kept as they are,
// so a fleet of unique values costs a map of bounded size, not a second
// copy of everything.
const maxInterned = 256

// interner shares equal short strings within one [Load.Add] call.
type interner struct {
	m map[string]string
}

func (in *interner) str(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	if in.m == nil {
		in.m = make(map[string]string, 16)
	}
	if len(in.m) < maxInterned {
		s = strings.Clone(s) // s may be part of a larger string
		in.m[s] = s
	}
	return s
}

// deviceKey splits a device record key (CA, device id, source) with the
// CA and source interned.
func (in *interner) deviceKey(k string) (DeviceKey, string, bool) {
	var parts [3]string
	for i := range parts {
		n, w := uvarintString(k)
		if w <= 0 || uint64(len(k)-w) < n {
			return DeviceKey{}, "", false
		}
		parts[i], k = k[w:w+int(n)], k[w+int(n):]
	}
	if k != "" {
		return DeviceKey{}, "", false
	}
	// The id is copied out of the key so the key's memory is not kept.
	return DeviceKey{CA: in.str(parts[0]), ID: strings.Clone(parts[1])}, in.str(parts[2]), true
}

// uvarintString is [binary.Uvarint] over a string.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

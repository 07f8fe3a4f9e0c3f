package assertion

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// shards spreads the cache over several locks so concurrent requests
// rarely contend.
const shards = 16

// cache holds signed tokens by identity, each shard a bounded LRU list.
type cache struct {
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu sync.Mutex // protects the fields below
	m  map[uint64]*entry
	// lru is the sentinel of a circular list, most recently used first.
	lru entry
	max int
}

type entry struct {
	key        uint64
	claims     Claims // a private copy: the caller may reuse its slices
	token      string
	gen        uint64    // the key generation that signed token
	refreshAt  time.Time // re-sign from here on
	prev, next *entry
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	per := max(1, (size+shards-1)/shards)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.m = make(map[uint64]*entry, per)
		sh.lru.prev, sh.lru.next = &sh.lru, &sh.lru
		sh.max = per
	}
	return c
}

// hash returns the cache key of c's identity. A collision costs only a
// miss: entries are compared field by field.
func (c *cache) hash(cl *Claims) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, s := range [...]string{cl.Resource, cl.UserID, cl.Email, cl.DeviceID, cl.DeviceCA} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	for _, g := range cl.Groups {
		h.WriteString(g)
		h.WriteByte(1)
	}
	return h.Sum64()
}

func (c *cache) shard(key uint64) *shard { return &c.shards[key>>60] }

// get returns the token cached for cl if it was signed by key generation
// gen and is not due for refresh at now.
func (c *cache) get(key uint64, cl *Claims, gen uint64, now time.Time) (string, bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil || e.gen != gen || !now.Before(e.refreshAt) || !e.claims.equal(cl) {
		return "", false
	}
	sh.unlinkLocked(e)
	sh.pushFrontLocked(e)
	return e.token, true
}

// put caches token for cl, evicting the least recently used entry of the
// shard when it is full.
func (c *cache) put(key uint64, cl *Claims, token string, gen uint64, refreshAt time.Time) {
	e := &entry{key: key, claims: *cl, token: token, gen: gen, refreshAt: refreshAt}
	e.claims.Groups = slices.Clone(cl.Groups)
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[key]; old != nil {
		sh.unlinkLocked(old)
	} else if len(sh.m) >= sh.max {
		last := sh.lru.prev
		sh.unlinkLocked(last)
		delete(sh.m, last.key)
	}
	sh.m[key] = e
	sh.pushFrontLocked(e)
}

func (sh *shard) unlinkLocked(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (sh *shard) pushFrontLocked(e *entry) {
	e.prev = &sh.lru
	e.next = sh.lru.next
	sh.lru.next.prev = e
	sh.lru.next = e
}

// len returns the number of cached tokens.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

package certs

import (
	"strings"
	"time"
)

// defaultCacheSize bounds the verification cache.
const defaultCacheSize = 10000

// A cacheKey names one verification: a leaf and the CA set it was checked
// against.
type cacheKey struct {
	fp  [32]byte // SHA-256 of the leaf
	cas string   // casKey of the allowed CAs
}

// A cacheEntry is a successful verification and how long it holds.
type cacheEntry struct {
	id                  *DeviceIdentity
	gen                 uint64    // the crlSet generation it was checked against
	notBefore, notAfter time.Time // where every certificate of the chain is valid
	crlDue              time.Time // the earliest nextUpdate of a consulted CRL when stale CRLs deny, or expiry of an OCSP answer; zero: none
}

// recheckBy makes the entry expire at due, if that is earlier; a zero due
// changes nothing.
func (e *cacheEntry) recheckBy(due time.Time) {
	if !due.IsZero() && (e.crlDue.IsZero() || due.Before(e.crlDue)) {
		e.crlDue = due
	}
}

// casKey identifies a CA set; the common cases (all, or one) do not
// allocate.
func casKey(cas []string) string {
	switch len(cas) {
	case 0:
		return ""
	case 1:
		return cas[0]
	}
	return strings.Join(cas, "\x00")
}

// cacheGet returns the cached identity for k if it still holds at now
// under CRL generation gen, and forgets it otherwise.
func (d *Devices) cacheGet(k cacheKey, now time.Time, gen uint64) *DeviceIdentity {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.cache[k]
	if !ok {
		return nil
	}
	if e.gen != gen || now.Before(e.notBefore) || now.After(e.notAfter) || !e.crlDue.IsZero() && now.After(e.crlDue) {
		delete(d.cache, k)
		return nil
	}
	return e.id
}

// cachePut remembers e, evicting an arbitrary entry when the cache is
// full. An entry made under an older CRL generation than the current one
// is dropped: a reload raced with it.
func (d *Devices) cachePut(k cacheKey, e *cacheEntry) {
	if e.gen != d.crl.Load().gen {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.cache[k]; !ok && len(d.cache) >= d.cacheMax {
		for old := range d.cache { // map order is random: a random victim
			delete(d.cache, old)
			break
		}
	}
	d.cache[k] = e
}

package gateway

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"portcullis/enforcement"
)

// liveRegistry holds every request being proxied right now, so the
// re-evaluator can close those a feed turned bad. Requests register for
// their whole life, which for a websocket or an event stream is hours;
// short requests come and go at a cost of one map insert and delete.
type liveRegistry struct {
	shards [32]liveShard
}

type liveShard struct {
	mu sync.Mutex // guards m
	m  map[*enforcement.Tracked]*liveEntry
	_  [40]byte // keep shards on separate cache lines
}

func newLiveRegistry() *liveRegistry {
	r := &liveRegistry{}
	for i := range r.shards {
		r.shards[i].m = map[*enforcement.Tracked]*liveEntry{}
	}
	return r
}

// liveEntry is a tracked request with what the gateway needs to end it.
// It is also the request's context while it is proxied: the registry's
// cancelable context, with the identity the upstream is told and the
// connection's forwarding values for the resource's Rewrite, so that one
// request copy carries both (see [requestState]). Its context's cancel
// cause is the entry itself, which is how the proxy's error handler
// learns that re-evaluation, not the client, ended it.
type liveEntry struct {
	context.Context // the request's, made cancelable by track
	enforcement.Tracked
	cancel context.CancelCauseFunc
	shard  *liveShard

	requestID string
	resource  string
	started   time.Time
	up        upstreamIdentity     // set before track, never changed after
	fwd       *forwardedValues     // the connection's; nil for handlers called directly
	reason    enforcement.Decision // why it was closed, if it was
	bytesOut  atomic.Int64         // response body bytes sent so far (and an upgraded connection's)
	bytesIn   atomic.Int64         // request body bytes read so far (and an upgraded connection's)
	mu        sync.Mutex
	closed    bool
}

type liveEntryKey struct{}

// Value returns e for its key and asks the request's context otherwise.
func (e *liveEntry) Value(key any) any {
	if _, ok := key.(liveEntryKey); ok {
		return e
	}
	return e.Context.Value(key)
}

// liveEntryOf returns the live entry a proxied request runs under, or nil.
func liveEntryOf(r *http.Request) *liveEntry {
	e, _ := r.Context().Value(liveEntryKey{}).(*liveEntry)
	return e
}

// track registers e, the live entry of r, and returns the request to
// proxy: r with e as its context, which the registry can cancel. The
// caller must call e.done when the request ends.
func (reg *liveRegistry) track(r *http.Request, e *liveEntry, res *resource, in *enforcement.Input, seq uint64, reqID string) *http.Request {
	reg.register(r.Context(), e, res, in, seq, reqID)
	return r.WithContext(e)
}

// register makes e a live request of res under parent: e becomes a
// context the registry can cancel, and the re-evaluator sees it until
// [liveEntry.done]. Proxied requests and tunnels both register here.
func (reg *liveRegistry) register(parent context.Context, e *liveEntry, res *resource, in *enforcement.Input, seq uint64, reqID string) {
	e.Context, e.cancel = context.WithCancelCause(parent)
	e.requestID, e.resource, e.started = reqID, res.name, in.Now
	e.Tracked = enforcement.Tracked{Resource: res.name, Policy: res.policy, Request: in.Request, Device: in.Device, Subject: in.Subject}
	e.Tracked.Close = e.close
	e.shard = &reg.shards[seq%uint64(len(reg.shards))]
	e.shard.mu.Lock()
	e.shard.m[&e.Tracked] = e
	e.shard.mu.Unlock()
}

// Error makes a closed entry the cause of its context's cancellation.
func (e *liveEntry) Error() string { return "closed by re-evaluation" }

// liveFrom returns the entry that closed a tracked request's context, or
// nil when it was not closed by re-evaluation.
func liveFrom(ctx context.Context) *liveEntry {
	e, _ := context.Cause(ctx).(*liveEntry)
	return e
}

// done removes e; the request has finished.
func (e *liveEntry) done() {
	e.shard.mu.Lock()
	delete(e.shard.m, &e.Tracked)
	e.shard.mu.Unlock()
	e.cancel(context.Canceled)
}

func (e *liveEntry) close(d enforcement.Decision) {
	e.mu.Lock()
	if !e.closed {
		e.closed, e.reason = true, d
	}
	e.mu.Unlock()
	e.cancel(e)
}

// closedBy reports whether the re-evaluator closed e, and why.
func (e *liveEntry) closedBy() (enforcement.Decision, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reason, e.closed
}

// Range implements [enforcement.Registry]. It visits a copy of each shard
// so that f may take its time and Close may run concurrently.
func (reg *liveRegistry) Range(f func(*enforcement.Tracked)) {
	var batch []*enforcement.Tracked
	for i := range reg.shards {
		sh := &reg.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for t := range sh.m {
			batch = append(batch, t)
		}
		sh.mu.Unlock()
		for _, t := range batch {
			f(t)
		}
	}
}

// userID is the user of the request: its login, or its certificate's.
func (e *liveEntry) userID() string {
	if e.Subject != nil {
		return e.Subject.UserID
	}
	if e.Device != nil {
		return e.Device.User
	}
	return ""
}

// rangeEntries is Range for the gateway's own use, with the entries.
func (reg *liveRegistry) rangeEntries(f func(*liveEntry)) {
	var batch []*liveEntry
	for i := range reg.shards {
		sh := &reg.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for _, e := range sh.m {
			batch = append(batch, e)
		}
		sh.mu.Unlock()
		for _, e := range batch {
			f(e)
		}
	}
}

// Len is the number of live requests.
func (reg *liveRegistry) Len() int {
	n := 0
	for i := range reg.shards {
		sh := &reg.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// closeSerials closes the live requests of device certificates whose
// serial is in serials, as a CRL refresh or OCSP answer revoked them.
func (reg *liveRegistry) closeSerials(serials map[string]bool) int {
	var hit []*liveEntry
	reg.rangeEntries(func(e *liveEntry) {
		if e.Device != nil && serials[e.Device.Serial] {
			hit = append(hit, e)
		}
	})
	for _, e := range hit {
		e.close(enforcement.Decision{Verdict: enforcement.Deny, Reason: enforcement.ReasonCertificateRevoked, Rule: "revocation.crl"})
	}
	return len(hit)
}

package enforcement

import (
	"context"
	"time"

	"portcullis/certs"
	"portcullis/posture"
)

// A Tracked is one live request the gateway let through: a websocket, a
// server-sent event stream, an HTTP/2 or HTTP/3 stream, a tunnel. It keeps
// what was decided on, so the [Reevaluator] can decide again with fresh
// posture and close it when the answer changes. The gateway owns it; its
// fields do not change after it is registered.
type Tracked struct {
	// Resource names the resource the request was routed to, and Policy
	// is its policy when the request was admitted; a reload may replace
	// it (see [Reevaluator.Policies]).
	Resource string
	Policy   *Policy
	Request  Request
	Device   *certs.DeviceIdentity
	Subject  *Subject
	// Close ends the request (the gateway cancels its context). It may be
	// called more than once and from any goroutine.
	Close func(Decision)
}

// Registry is what the re-evaluator needs of the gateway: a way to visit
// every live request. Range must not hold a lock that Close takes.
type Registry interface {
	Range(f func(*Tracked))
}

// Reevaluator re-decides live requests when posture, risk or revocations
// change, and on a timer so posture that ages past a resource's max_age
// closes what depends on it even when no feed says anything (fail closed).
type Reevaluator struct {
	Registry Registry
	State    State
	// Changes delivers store change events; nil means timer only.
	Changes <-chan posture.Change
	// Interval is the staleness sweep period (default 1s).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnClose, if set, is told of each request closed (for logs and
	// metrics).
	OnClose func(*Tracked, Decision)
	// OnSweep, if set, is told when a pass ends and how many requests it
	// re-decided: a sweep counter lets a test wait for a pass instead of
	// sleeping past one.
	OnSweep func(decided int)
	// Policies, if set, returns the current policy of a resource by
	// name, or nil when the running configuration no longer has it (the
	// request is then closed with route.not_found). It makes a reload
	// that tightens a policy reach requests admitted under the old one.
	// When nil, each request is re-decided under the policy it was
	// admitted with.
	Policies func(resource string) *Policy
}

// Run re-evaluates until ctx is done. Change events are coalesced: every
// event waiting when a pass starts is served by that one pass, so a burst
// of feed deliveries costs one sweep, not one per event.
func (r *Reevaluator) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Sweep(nil)
		case ch, ok := <-r.Changes:
			if !ok {
				r.Changes = nil
				continue
			}
			affected := newAffected()
			affected.add(ch)
		drain:
			for {
				select {
				case ch, ok := <-r.Changes:
					if !ok {
						r.Changes = nil
						break drain
					}
					affected.add(ch)
				default:
					break drain
				}
			}
			r.Sweep(affected)
		}
	}
}

// affected is the set of devices and users a batch of changes touched;
// all is set when a change was lost and everything must be re-decided.
type affected struct {
	all      bool
	devices  map[posture.DeviceKey]bool
	users    map[string]bool
	sessions map[string]bool
}

func newAffected() *affected {
	return &affected{devices: map[posture.DeviceKey]bool{}, users: map[string]bool{}, sessions: map[string]bool{}}
}

func (a *affected) add(ch posture.Change) {
	if ch.Lost {
		a.all = true
	}
	if ch.Device != nil {
		a.devices[*ch.Device] = true
	}
	if ch.User != "" {
		a.users[ch.User] = true
	}
	if ch.Session != "" {
		a.sessions[ch.Session] = true
	}
	if ch.Device == nil && ch.User == "" && ch.Session == "" {
		a.all = true // a change we cannot attribute: be thorough
	}
}

func (a *affected) matches(t *Tracked) bool {
	if a == nil || a.all {
		return true
	}
	if t.Device != nil && a.devices[posture.DeviceKey{CA: t.Device.CA, ID: t.Device.DeviceID}] {
		return true
	}
	if t.Subject != nil && (a.users[t.Subject.UserID] || t.Subject.SessionID != "" && a.sessions[t.Subject.SessionID]) {
		return true
	}
	return t.Device != nil && t.Device.User != "" && a.users[t.Device.User]
}

// Sweep re-decides the live requests that a touches (every one when a is
// nil) and closes those now denied. It returns how many it closed.
func (r *Reevaluator) Sweep(a *affected) int {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	at := now()
	var closing []*Tracked
	var why []Decision
	decided := 0
	r.Registry.Range(func(t *Tracked) {
		if !a.matches(t) {
			return
		}
		decided++
		if d := r.decide(t, at); d.Verdict != Allow {
			closing = append(closing, t)
			why = append(why, d)
		}
	})
	// Close outside Range: Close may take the registry's locks.
	for i, t := range closing {
		t.Close(why[i])
		if r.OnClose != nil {
			r.OnClose(t, why[i])
		}
	}
	if r.OnSweep != nil {
		r.OnSweep(decided)
	}
	return len(closing)
}

// decide gathers fresh state for t and decides again, exactly as the
// request handler decided when t was admitted.
func (r *Reevaluator) decide(t *Tracked, now time.Time) Decision {
	in := Input{Now: now, Request: t.Request, Device: t.Device, Subject: t.Subject}
	if t.Device != nil {
		in.Cert = CertValid // admitted: its certificate was verified (CRLs close by serial)
	}
	Gather(r.State, &in)
	p := t.Policy
	if r.Policies != nil {
		p = r.Policies(t.Resource)
	}
	return Decide(p, &in)
}

package audit

import "slices"

// subscriber is one receiver of copies of the records written.
type subscriber struct {
	ch chan Record
}

// Subscribe returns a channel that receives a copy of every decision
// record written from now on, and a function that ends the subscription.
// It is how the admin console shows decisions as they happen.
//
// Write never waits for a subscriber: when the channel's buffer of buf
// records is full, the record is dropped for that subscriber and counted
// in portcullis_audit_dropped_total{sink="subscriber"}. The channel is
// never closed, since a Write may be sending on it while the
// subscription ends; the reader stops reading when it is done, after
// calling the returned function.
func (l *Log) Subscribe(buf int) (<-chan Record, func()) {
	s := &subscriber{ch: make(chan Record, max(buf, 1))}
	l.subsMu.Lock()
	var cur []*subscriber
	if p := l.subs.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), s)
	l.subs.Store(&next)
	l.subsMu.Unlock()
	return s.ch, func() {
		l.subsMu.Lock()
		defer l.subsMu.Unlock()
		p := l.subs.Load()
		if p == nil {
			return
		}
		i := slices.Index(*p, s)
		if i < 0 {
			return
		}
		next := slices.Delete(slices.Clone(*p), i, i+1)
		if len(next) == 0 {
			l.subs.Store(nil)
			return
		}
		l.subs.Store(&next)
	}
}

// publish offers a copy of rec to every subscriber without waiting.
func (l *Log) publish(subs []*subscriber, rec *Record) {
	for _, s := range subs {
		select {
		case s.ch <- *rec:
		default:
			l.metrics.dropped[idxSub].Inc()
		}
	}
}

package posture

import (
	"sync"
	"sync/atomic"
)

// Subscribe returns a channel that receives a [Change] after every
// committed change, and a function that ends the subscription and closes
// the channel. The channel holds buf changes; the store never waits for a
// subscriber: when the channel is full the change is dropped and counted
// (Stats.ChangesDropped), and the next change delivered has Lost set. The
// channel is also closed by [DB.Close].
func (db *DB) Subscribe(buf int) (<-chan Change, func()) {
	sub := &subscriber{ch: make(chan Change, max(buf, 1))}
	db.subs.mu.Lock()
	if db.subs.closed {
		close(sub.ch)
	} else {
		db.subs.list = append(db.subs.list, sub)
	}
	db.subs.mu.Unlock()
	var once sync.Once
	return sub.ch, func() { once.Do(func() { db.subs.remove(sub) }) }
}

type subscribers struct {
	mu      sync.Mutex // guards list, closed and each subscriber's lost
	list    []*subscriber
	closed  bool
	dropped atomic.Int64
}

type subscriber struct {
	ch   chan Change
	lost bool // a change was dropped since the last delivered one
}

// publish delivers changes without blocking. It holds mu across the sends
// so that remove cannot close a channel under it; the sends never wait.
func (s *subscribers) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.list {
		for _, c := range changes {
			c.Lost = sub.lost
			select {
			case sub.ch <- c:
				sub.lost = false
			default:
				sub.lost = true
				s.dropped.Add(1)
			}
		}
	}
}

func (s *subscribers) remove(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.list {
		if x == sub {
			s.list = append(s.list[:i], s.list[i+1:]...)
			close(sub.ch)
			return
		}
	}
}

func (s *subscribers) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.list {
		close(sub.ch)
	}
	s.list = nil
	s.closed = true
}

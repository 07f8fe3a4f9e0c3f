package tunnel

import "sync"

// Limiter counts open tunnels per tunnel resource and user, for
// max_per_user. It outlives configuration snapshots, so a reload changes
// the caps, never the counts. It is safe for concurrent use.
type Limiter struct {
	mu   sync.Mutex       // guards open
	open map[limitKey]int // tunnels open now
}

type limitKey struct{ tunnel, user string }

// NewLimiter returns an empty limiter.
func NewLimiter() *Limiter { return &Limiter{open: map[limitKey]int{}} }

// Acquire takes one of user's max slots of tunnel. It returns a function
// that gives it back (call it exactly once), or nil when user has max
// open already.
func (l *Limiter) Acquire(tunnel, user string, max int) (release func()) {
	k := limitKey{tunnel, user}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[k] >= max {
		return nil
	}
	l.open[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.open[k]--; l.open[k] <= 0 {
				delete(l.open, k)
			}
			l.mu.Unlock()
		})
	}
}

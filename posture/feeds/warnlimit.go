package feeds

import (
	"log/slog"
	"sync"
	"time"
)

// A feed logs at most warnBurst WARN lines about refused requests per
// warnInterval. Refusals cost an unauthenticated sender nothing, so
// without a bound a flood of bad signatures would be a flood of log
// lines; the metrics still count every refusal.
const (
	warnBurst    = 10
	warnInterval = time.Minute
)

// warnLimiter bounds one feed's WARN lines about refused requests: the
// first warnBurst of each interval are logged, the rest dropped and
// counted, and the first line logged after the interval ends is preceded
// by one "feed log lines suppressed" line with that count. Safe for
// concurrent use; the zero value is ready.
type warnLimiter struct {
	mu         sync.Mutex // guards the fields below
	start      time.Time  // of the current interval
	logged     int        // lines logged in it
	suppressed int        // lines dropped in it
}

// warn logs msg with args at WARN on log, unless the limit is reached.
func (l *warnLimiter) warn(log *slog.Logger, now time.Time, msg string, args ...any) {
	l.mu.Lock()
	dropped := 0
	if now.Sub(l.start) >= warnInterval || now.Before(l.start) {
		dropped = l.suppressed
		l.start, l.logged, l.suppressed = now, 0, 0
	}
	ok := l.logged < warnBurst
	if ok {
		l.logged++
	} else {
		l.suppressed++
	}
	l.mu.Unlock()
	if dropped > 0 {
		log.Warn("feed log lines suppressed", "suppressed", dropped, "interval", warnInterval.String())
	}
	if ok {
		log.Warn(msg, args...)
	}
}

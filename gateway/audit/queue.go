package audit

import (
	"sync"
	"time"
)

// queue is a bounded queue of encoded records, kept as one byte slice so
// a writer takes everything queued in one swap and sends it with one
// write. Producers only append under the lock; no I/O happens under it.
type queue struct {
	maxN     int // records
	maxBytes int
	// wake has room for one signal, sent when the queue grows past
	// flushBytes; otherwise the writer comes every flushInterval. Waking
	// the writer for every record would cost more than encoding it.
	wake chan struct{}

	mu  sync.Mutex // protects buf and n
	buf []byte
	n   int // records in buf
}

// maxQueueBytes bounds the bytes a queue holds whatever its record
// limit; at the 2 KiB field limit a record can be some tens of KiB.
const maxQueueBytes = 16 << 20

// A writer takes the queue when it holds flushBytes, or every
// flushInterval, whichever comes first.
const (
	flushBytes    = 64 << 10
	flushInterval = 50 * time.Millisecond
)

// shrinkAbove is the capacity above which a drained buffer is dropped
// rather than reused, so a burst does not pin its peak memory.
const shrinkAbove = 4 << 20

func newQueue(maxN int) *queue {
	return &queue{maxN: maxN, maxBytes: maxQueueBytes, wake: make(chan struct{}, 1)}
}

// push appends one record made of a and b. It reports false, queuing
// nothing, when the queue is full.
func (q *queue) push(a, b []byte) bool {
	q.mu.Lock()
	if q.n >= q.maxN || len(q.buf)+len(a)+len(b) > q.maxBytes {
		q.mu.Unlock()
		return false
	}
	before := len(q.buf)
	q.buf = append(q.buf, a...)
	q.buf = append(q.buf, b...)
	q.n++
	full := before < flushBytes && len(q.buf) >= flushBytes
	q.mu.Unlock()
	if full {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns everything queued and the number of records in it,
// leaving spare (emptied) as the queue's buffer. The caller owns the
// returned slice until it hands it back as spare.
func (q *queue) take(spare []byte) ([]byte, int) {
	if cap(spare) > shrinkAbove {
		spare = nil
	}
	q.mu.Lock()
	b, n := q.buf, q.n
	q.buf, q.n = spare[:0], 0
	q.mu.Unlock()
	return b, n
}

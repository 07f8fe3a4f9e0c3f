package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"portcullis/posture"
)

// Options tune [Open].
type Options struct {
	// Logger receives lifecycle and failure messages; nil discards them.
	Logger *slog.Logger
	// Posture are the options of the replica's copy.
	Posture posture.Options
}

// keys are the store's Redis keys.
type keys struct {
	generation, rev, stream                     string
	devices, users, revocations, cursors, dedup string
	replay                                      string
}

func newKeys(prefix string) keys {
	return keys{
		generation:  prefix + "generation",
		rev:         prefix + "rev",
		stream:      prefix + "changes",
		devices:     prefix + "devices",
		users:       prefix + "users",
		revocations: prefix + "revocations",
		cursors:     prefix + "cursors",
		dedup:       prefix + "seen:",
		replay:      prefix + "replay:",
	}
}

// Store is one replica's view of the shared store: a [posture.DB] holding
// the whole store in memory, and the follower that keeps it current. Call
// [Store.Run] to load and follow; until the first load completes the copy
// is empty, so nothing that needs posture is allowed.
type Store struct {
	c      goredis.UniversalClient
	k      keys
	db     *posture.DB
	log    *slog.Logger
	maxLen int64

	gen      atomic.Pointer[string] // the generation the copy belongs to
	kick     chan struct{}          // asks the follower to check the generation now
	commits  atomic.Int64
	foreignN atomic.Int64

	mu     sync.Mutex // guards status
	status Status

	// Owned by the follower (Run) alone.
	rev  uint64 // the copy's revision
	full bool   // the next round must reload everything
	wg   sync.WaitGroup
}

// Status is the store's state, for /readyz and logs.
type Status struct {
	// State is "loading" (no copy yet), "ok" (following the stream) or
	// "disconnected" (serving from the copy; posture ages meanwhile).
	State string `json:"state"`
	// Loaded reports whether the copy was loaded at least once.
	Loaded bool `json:"loaded"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Rev is the copy's revision.
	Rev uint64 `json:"rev"`
	// Err is the last connection error, when disconnected.
	Err string `json:"error,omitempty"`
}

// quietClient silences go-redis's own logger, which writes plain lines
// to stderr; the store reports connection state itself, as JSON.
var quietClient sync.Once

type discardLogging struct{}

func (discardLogging) Printf(context.Context, string, ...any) {}

// Open connects lazily to Redis and returns a store with an empty copy;
// it does not wait for Redis, so a replica can start while Redis is down
// (and then refuses what needs posture until [Store.Run] has loaded).
// cfg's file paths must already be resolved.
func Open(cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, err := cfg.options()
	if err != nil {
		return nil, err
	}
	quietClient.Do(func() { goredis.SetLogger(discardLogging{}) })
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	s := &Store{
		c:      goredis.NewUniversalClient(o),
		k:      newKeys(prefix),
		log:    opts.Logger,
		maxLen: cfg.StreamMaxLen,
		kick:   make(chan struct{}, 1),
		full:   true,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxLen == 0 {
		s.maxLen = DefaultStreamMaxLen
	}
	s.gen.Store(new(string))
	s.status = Status{State: "loading", Since: time.Now()}
	po := opts.Posture
	if po.Logger == nil {
		po.Logger = s.log
	}
	s.db = posture.NewShared(s, po)
	return s, nil
}

// DB is the replica's copy, which every reader and writer uses.
func (s *Store) DB() *posture.DB { return s.db }

// Status returns the store's state.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Ready reports whether the copy was loaded at least once: a replica cut
// off from Redis afterwards keeps serving from it until posture is stale.
func (s *Store) Ready() bool { return s.Status().Loaded }

// Close closes the client. Writes fail afterwards.
func (s *Store) Close() error { return s.c.Close() }

func (s *Store) generation() string { return *s.gen.Load() }

func (s *Store) kickResync() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Store) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.State != state {
		s.status.State, s.status.Since = state, time.Now()
	}
	s.status.Rev = s.rev
	s.status.Err = ""
	if err != nil {
		s.status.Err = err.Error()
	}
	if state == "ok" {
		s.status.Loaded = true
	}
}

// foreign reports a value under the prefix that the store did not write.
func (s *Store) foreign(b posture.Bucket, field string) {
	s.foreignN.Add(1)
	s.log.Warn("ignoring a foreign value in the shared store", "bucket", b.String(), "field_bytes", len(field))
}

// Foreign returns how many foreign or corrupt values were ignored.
func (s *Store) Foreign() int64 { return s.foreignN.Load() + s.db.Corrupt() }

var (
	errGap        = errors.New("the change stream has a gap (trimmed while this replica was away)")
	errGeneration = errors.New("the store was reset (Redis restarted empty or was flushed)")
)

// Run loads the copy and follows the change stream until ctx ends,
// reconnecting with backoff. It returns nil when ctx ends.
func (s *Store) Run(ctx context.Context) error {
	defer s.wg.Wait()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errGap), errors.Is(err, errGeneration):
			s.log.Warn("reloading the shared store", "reason", err.Error())
			s.full = true
			continue
		}
		state := "disconnected"
		if !s.Status().Loaded {
			state = "loading"
		}
		if s.Status().State != state || backoff == 100*time.Millisecond {
			s.log.Warn("shared store unreachable; deciding from the local copy", "rev", s.rev, "err", err)
		}
		s.setState(state, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
		if s.Status().State == "ok" {
			backoff = 100 * time.Millisecond
		}
	}
	return nil
}

// follow connects, loads or resumes, then installs changes until an error.
func (s *Store) follow(ctx context.Context) error {
	gen, err := s.ensureGeneration(ctx)
	if err != nil {
		return err
	}
	wasDown := s.Status().State == "disconnected"
	downSince := s.Status().Since
	if s.full || gen != s.generation() {
		if err := s.load(ctx, gen); err != nil {
			return err
		}
	} else if wasDown {
		cur, err := s.c.Get(ctx, s.k.rev).Uint64()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		s.log.Info("shared store reachable again; catching up from the change stream",
			"behind", int64(cur)-int64(s.rev), "disconnected_for", time.Since(downSince).Round(time.Millisecond).String())
	}
	s.setState("ok", nil)
	for {
		select {
		case <-s.kick:
			if g, err := s.c.Get(ctx, s.k.generation).Result(); err != nil || g != s.generation() {
				return errGeneration
			}
		default:
		}
		res, err := s.c.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{s.k.stream, fmt.Sprintf("0-%d", s.rev)},
			Count:   1000,
			Block:   time.Second,
		}).Result()
		if errors.Is(err, goredis.Nil) {
			// Idle: confirm the generation, which a Redis restarted empty
			// changes without a stream entry.
			g, err := s.c.Get(ctx, s.k.generation).Result()
			if errors.Is(err, goredis.Nil) || err == nil && g != s.generation() {
				return errGeneration
			}
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := s.install(res); err != nil {
			return err
		}
	}
}

// install applies one XREAD reply to the copy.
func (s *Store) install(res []goredis.XStream) error {
	var recs []posture.Record
	rev := s.rev
	for _, st := range res {
		for _, m := range st.Messages {
			r, ok := parseEntryID(m.ID)
			if !ok {
				s.foreign(0, m.ID)
				continue
			}
			if r <= rev {
				continue
			}
			if r != rev+1 {
				if len(recs) > 0 {
					s.db.Install(recs, rev)
					s.rev = rev
				}
				return errGap
			}
			rev = r
			// An entry of another generation was not written by this
			// store's writers; the idle check of the generation key
			// notices a reset.
			b, _ := m.Values["b"].(string)
			if g, _ := m.Values["e"].(string); g != s.generation() {
				s.foreign(0, m.ID)
				continue
			}
			rs, err := parsePayload([]byte(b), r)
			if err != nil {
				s.foreign(0, m.ID)
				continue
			}
			recs = append(recs, rs...)
		}
	}
	s.db.Install(recs, rev)
	s.rev = rev
	s.mu.Lock()
	s.status.Rev = rev
	s.mu.Unlock()
	return nil
}

// ensureGeneration returns the store's generation, starting one on an
// empty Redis.
func (s *Store) ensureGeneration(ctx context.Context) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	if err := s.c.SetNX(ctx, s.k.generation, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return "", err
	}
	return s.c.Get(ctx, s.k.generation).Result()
}

// scanCount is how many fields one HSCAN asks for.
const scanCount = 20000

// load reads the whole store into the copy. If the generation changed
// under a loaded copy, Redis lost its data: the copy's revocations are
// written back (they only ever tighten, so that is safe), and posture and
// risk must come again from the feeds.
//
// One goroutine scans while the others decode what it read, so the
// round trips to Redis overlap with the decoding, which runs on every
// core.
func (s *Store) load(ctx context.Context, gen string) error {
	start := time.Now()
	rev, err := s.c.Get(ctx, s.k.rev).Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	hashes := []scanned{
		{b: posture.BucketDevices, key: s.k.devices},
		{b: posture.BucketUsers, key: s.k.users},
		{b: posture.BucketRevocations, key: s.k.revocations},
		{b: posture.BucketCursors, key: s.k.cursors},
	}
	for i := range hashes {
		n, err := s.c.HLen(ctx, hashes[i].key).Result()
		if err != nil {
			return fmt.Errorf("loading %s: %w", hashes[i].b, err)
		}
		hashes[i].n = n
	}
	l := s.db.NewLoad(int(hashes[0].n))
	batches := make(chan scanBatch, 2)
	var records atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(batches)
		for _, h := range hashes {
			if err := s.scan(gctx, h, batches); err != nil {
				return err
			}
		}
		return nil
	})
	for range max(runtime.GOMAXPROCS(0), 1) {
		g.Go(func() error {
			for sb := range batches {
				recs := make([]posture.Record, 0, len(sb.kv)/2)
				for j := 0; j+1 < len(sb.kv); j += 2 {
					r, v, ok := splitStored(sb.kv[j+1])
					if !ok {
						s.foreign(sb.b, sb.kv[j])
						continue
					}
					recs = append(recs, posture.Record{Bucket: sb.b, Key: sb.kv[j], Value: v, Rev: r})
				}
				l.Add(recs)
				records.Add(int64(len(recs)))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	old := s.generation()
	lost := old != "" && old != gen
	var reseed []posture.RevocationEvent
	if lost {
		s.db.RangeRevocations(func(r *posture.Revocation) bool {
			reseed = append(reseed, posture.RevocationEvent{Revocation: *r})
			return true
		})
	}
	s.gen.Store(&gen)
	l.Commit(rev)
	s.rev, s.full = rev, false
	s.log.Info("shared store loaded", "records", records.Load(), "rev", rev,
		"duration", time.Since(start).Round(time.Millisecond).String())
	if lost {
		s.log.Error("the shared store lost its data (Redis restarted empty or was flushed): posture and risk must be sent again; writing back this replica's revocations",
			"revocations", len(reseed))
		if len(reseed) > 0 {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := s.db.ApplyRevocations(wctx, reseed); err != nil {
					s.log.Error("writing back revocations failed", "err", err)
				}
			}()
		}
	}
	return nil
}

// scanned is one hash the load reads, with its length when it started.
type scanned struct {
	b   posture.Bucket
	key string
	n   int64
}

// scanBatch is one HSCAN reply: field, value, field, value…
type scanBatch struct {
	b  posture.Bucket
	kv []string
}

// scan reads one hash with HSCAN and hands each reply to out.
func (s *Store) scan(ctx context.Context, h scanned, out chan<- scanBatch) error {
	// HSCAN returns every field present throughout the scan at least
	// once; bound the loop well above what that takes.
	limit := 2*h.n/scanCount + 100
	var cursor uint64
	for i := int64(0); ; i++ {
		if i > limit {
			return fmt.Errorf("loading %s: scan did not finish in %d rounds", h.b, limit)
		}
		kv, next, err := s.c.HScan(ctx, h.key, cursor, "", scanCount).Result()
		if err != nil {
			return fmt.Errorf("loading %s: %w", h.b, err)
		}
		select {
		case out <- scanBatch{b: h.b, kv: kv}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

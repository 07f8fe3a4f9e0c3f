package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"portcullis/posture"
)

// hashes are the store's record hashes, in dump order.
func (s *Store) hashes() []struct {
	b   posture.Bucket
	key string
} {
	return []struct {
		b   posture.Bucket
		key string
	}{
		{posture.BucketDevices, s.k.devices}, {posture.BucketUsers, s.k.users},
		{posture.BucketRevocations, s.k.revocations}, {posture.BucketCursors, s.k.cursors},
	}
}

// globEscape quotes the glob characters of s for SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Export passes every record Redis holds under the prefix to yield: the
// hashes, then the remembered event ids with their expiry. It reads
// Redis directly (it needs no loaded copy); values the store did not
// write are reported and left out. Replay-cache keys are not exported:
// they live minutes.
func (s *Store) Export(ctx context.Context, yield func(posture.Entry) error) error {
	for _, h := range s.hashes() {
		var cursor uint64
		for {
			kv, next, err := s.c.HScan(ctx, h.key, cursor, "", scanCount).Result()
			if err != nil {
				return fmt.Errorf("exporting %s: %w", h.b, err)
			}
			for j := 0; j+1 < len(kv); j += 2 {
				_, v, ok := splitStored(kv[j+1])
				if !ok {
					s.foreign(h.b, kv[j])
					continue
				}
				if err := yield(posture.Entry{Bucket: h.b, Key: kv[j], Value: v}); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	var cursor uint64
	now := time.Now()
	for {
		keys, next, err := s.c.Scan(ctx, cursor, globEscape(s.k.dedup)+"*", scanCount).Result()
		if err != nil {
			return fmt.Errorf("exporting dedup: %w", err)
		}
		pipe := s.c.Pipeline()
		ttls := make([]*goredis.DurationCmd, len(keys))
		for i, k := range keys {
			ttls[i] = pipe.PTTL(ctx, k)
		}
		if len(keys) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
				return fmt.Errorf("exporting dedup: %w", err)
			}
		}
		for i, k := range keys {
			ttl := ttls[i].Val()
			if ttl <= 0 { // gone, or without the expiry the store always sets
				continue
			}
			e := posture.Entry{Bucket: posture.BucketDedup, Key: strings.TrimPrefix(k, s.k.dedup), Expires: now.Add(ttl)}
			if err := yield(e); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// importScript writes one batch of an import without conditions and
// appends it to the change stream, so running replicas install it.
//
// KEYS: 1 generation, 2 revision counter, 3 stream, 4 devices, 5 users,
// 6 revocations, 7 cursors, 8… event-id keys.
// ARGV: 1 generation, 2 stream length, 3 stream payload, then three per
// record: bucket, field (event ids: index in KEYS), value (event ids:
// time to live in ms).
var importScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('PORTCULLIS_GENERATION the store was reset during the import')
end
for i = 3, 7 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  local want = 'hash'
  if i == 3 then want = 'stream' end
  if t ~= want and t ~= 'none' then
    return redis.error_reply('PORTCULLIS_WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t)
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1], 'b', ARGV[3])
for j = 4, #ARGV, 3 do
  local b = tonumber(ARGV[j])
  if b == 5 then
    redis.call('SET', KEYS[tonumber(ARGV[j + 1])], '1', 'PX', ARGV[j + 2])
  else
    redis.call('HSET', KEYS[3 + b], ARGV[j + 1], seq .. ' ' .. ARGV[j + 2])
  end
end
return seq
`)

// importBatch is how many records one import script writes.
const importBatch = 1000

// Import writes every entry next returns (until io.EOF) into Redis and
// returns how many it wrote. A store that holds records is refused with
// [posture.ErrNotEmpty] unless force; then entries replace the records
// with their keys and other records stay. Each batch is one script,
// atomic and streamed, so running replicas install it as any write; but
// an import does not check revisions, so import into a store no gateway
// is writing. Expired event ids are skipped. A failed import can be run
// again with force.
func (s *Store) Import(ctx context.Context, force bool, next func() (posture.Entry, error)) (int, error) {
	gen, err := s.ensureGeneration(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", posture.ErrUnavailable, err)
	}
	if !force {
		for _, h := range s.hashes() {
			n, err := s.c.Exists(ctx, h.key).Result()
			if err != nil {
				return 0, fmt.Errorf("%w: %w", posture.ErrUnavailable, err)
			}
			if n > 0 {
				return 0, fmt.Errorf("%w: %s holds records (use --force to import over them)", posture.ErrNotEmpty, h.key)
			}
		}
	}
	total := 0
	for {
		keys := []string{s.k.generation, s.k.rev, s.k.stream, s.k.devices, s.k.users, s.k.revocations, s.k.cursors}
		args := []any{gen, s.maxLen, nil}
		var payload []byte
		done := false
		for len(args) < 3+3*importBatch {
			e, err := next()
			if err == io.EOF {
				done = true
				break
			}
			if err != nil {
				return total, err
			}
			if e.Bucket == posture.BucketDedup {
				ttl := time.Until(e.Expires).Milliseconds()
				if ttl <= 0 {
					continue
				}
				keys = append(keys, s.k.dedup+e.Key)
				args = append(args, int(e.Bucket), len(keys), ttl)
				continue
			}
			payload = appendOp(payload, &posture.Op{Bucket: e.Bucket, Key: e.Key, Value: e.Value})
			args = append(args, int(e.Bucket), e.Key, e.Value)
		}
		if len(args) > 3 {
			args[2] = payload
			if err := importScript.Run(ctx, s.c, keys, args...).Err(); err != nil {
				return total, fmt.Errorf("importing: %w", err)
			}
			total += (len(args) - 3) / 3
		}
		if done {
			return total, nil
		}
	}
}

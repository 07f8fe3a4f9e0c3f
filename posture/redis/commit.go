package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"portcullis/posture"
)

// commitScript stores one transaction if every condition holds, and
// appends it to the change stream. It checks everything before it writes
// anything, since a script that fails half-way keeps its first writes.
//
// KEYS: 1 generation, 2 revision counter, 3 stream, 4 devices, 5 users,
// 6 revocations, 7 cursors, 8… event-id keys.
// ARGV: 1 generation, 2 stream length, 3 stream payload, then five per
// write: bucket, field (event ids: index in KEYS), expected revision
// (event ids: time to live in ms), flag (0 delete, 1 put), value.
//
// It returns the new revision, or a flat list of conflicts, four per key:
// bucket, field, present ("0" or "1"), stored value.
var commitScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('PORTCULLIS_GENERATION the store was reset or is not loaded')
end
for i = 3, 7 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  local want = 'hash'
  if i == 3 then want = 'stream' end
  if t ~= want and t ~= 'none' then
    return redis.error_reply('PORTCULLIS_WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t)
  end
end
local n = (#ARGV - 3) / 5
local conflicts = {}
for j = 0, n - 1 do
  local a = 4 + j * 5
  local b = tonumber(ARGV[a])
  if b == 5 then
    if redis.call('EXISTS', KEYS[tonumber(ARGV[a + 1])]) == 1 then
      table.insert(conflicts, '5')
      table.insert(conflicts, ARGV[a + 1])
      table.insert(conflicts, '1')
      table.insert(conflicts, '')
    end
  elseif b ~= 4 then
    local cur = redis.call('HGET', KEYS[3 + b], ARGV[a + 1])
    local rev = 0
    if cur then
      rev = tonumber(string.match(cur, '^(%d+) ')) or 0
    end
    if rev ~= tonumber(ARGV[a + 2]) then
      table.insert(conflicts, tostring(b))
      table.insert(conflicts, ARGV[a + 1])
      if cur then
        table.insert(conflicts, '1')
        table.insert(conflicts, cur)
      else
        table.insert(conflicts, '0')
        table.insert(conflicts, '')
      end
    end
  end
end
if #conflicts > 0 then
  return conflicts
end
local seq = redis.call('INCR', KEYS[2])
local added = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1], 'b', ARGV[3])
if type(added) == 'table' and added.err then
  -- The stream is ahead of the counter (the counter was lost on its own,
  -- or someone added entries): move the counter past the stream's top.
  local info = redis.call('XINFO', 'STREAM', KEYS[3])
  local last = ''
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  local ms, top = string.match(last, '^(%d+)-(%d+)$')
  if ms ~= '0' then
    return redis.error_reply('PORTCULLIS_WRONGTYPE ' .. KEYS[3] .. ' holds entries the store did not write')
  end
  seq = tonumber(top) + 1
  redis.call('SET', KEYS[2], seq)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1], 'b', ARGV[3])
end
for j = 0, n - 1 do
  local a = 4 + j * 5
  local b = tonumber(ARGV[a])
  if b == 5 then
    redis.call('SET', KEYS[tonumber(ARGV[a + 1])], '1', 'PX', ARGV[a + 2])
  elseif ARGV[a + 3] == '0' then
    redis.call('HDEL', KEYS[3 + b], ARGV[a + 1])
  else
    redis.call('HSET', KEYS[3 + b], ARGV[a + 1], seq .. ' ' .. ARGV[a + 4])
  end
end
return seq
`)

// Commit implements [posture.Shared].
func (s *Store) Commit(ctx context.Context, ops []posture.Op) (uint64, error) {
	gen := s.generation()
	if gen == "" {
		return 0, fmt.Errorf("%w: not loaded yet", posture.ErrUnavailable)
	}
	keys := []string{s.k.generation, s.k.rev, s.k.stream, s.k.devices, s.k.users, s.k.revocations, s.k.cursors}
	var payload []byte
	args := make([]any, 3, 3+5*len(ops))
	dedup := map[int]string{} // index in KEYS → event-id key
	for i := range ops {
		op := &ops[i]
		if op.Bucket == posture.BucketDedup {
			keys = append(keys, s.k.dedup+op.Key)
			dedup[len(keys)] = op.Key
			ttl := max(time.Until(op.Expires).Milliseconds(), 1)
			args = append(args, int(op.Bucket), len(keys), ttl, 1, "")
			continue
		}
		payload = appendOp(payload, op)
		flag := 1
		if op.Value == nil {
			flag = 0
		}
		args = append(args, int(op.Bucket), op.Key, op.Expect, flag, op.Value)
	}
	args[0], args[1], args[2] = gen, s.maxLen, payload
	res, err := commitScript.Run(ctx, s.c, keys, args...).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "PORTCULLIS_GENERATION") {
			s.kickResync()
		}
		if strings.HasPrefix(err.Error(), "PORTCULLIS_WRONGTYPE") {
			s.log.Error("a key under the store's prefix holds a foreign value; writes are refused until it is removed", "err", err)
		}
		return 0, fmt.Errorf("%w: %w", posture.ErrUnavailable, err)
	}
	switch v := res.(type) {
	case int64:
		s.commits.Add(1)
		return uint64(v), nil
	case []any:
		return 0, s.conflict(v, dedup)
	}
	return 0, fmt.Errorf("%w: unexpected reply %T from the commit script", posture.ErrUnavailable, res)
}

// conflict turns the script's list of conflicts into a ConflictError.
func (s *Store) conflict(v []any, dedup map[int]string) error {
	ce := &posture.ConflictError{}
	for i := 0; i+3 < len(v); i += 4 {
		bs, _ := v[i].(string)
		field, _ := v[i+1].(string)
		present, _ := v[i+2].(string)
		stored, _ := v[i+3].(string)
		b, err := strconv.Atoi(bs)
		if err != nil {
			return errors.New("redis: malformed conflict reply")
		}
		rec := posture.Record{Bucket: posture.Bucket(b), Key: field}
		if rec.Bucket == posture.BucketDedup {
			idx, _ := strconv.Atoi(field)
			rec.Key, rec.Value = dedup[idx], []byte{1}
			ce.Records = append(ce.Records, rec)
			continue
		}
		if present == "1" {
			rev, value, ok := splitStored(stored)
			if ok {
				rec.Rev, rec.Value = rev, value
			} else {
				s.foreign(rec.Bucket, field)
			}
		}
		ce.Records = append(ce.Records, rec)
	}
	return ce
}

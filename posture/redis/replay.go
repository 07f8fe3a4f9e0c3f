package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"portcullis/posture"
)

// Seen records key as used until expires (now is the caller's clock) and
// reports whether it was already recorded and still live: the replay
// cache of SAML assertion ids and OIDC logout token ids, shared by every
// replica. It is one SET NX PX under <prefix>replay:<sha256 of key>, so
// two replicas that receive the same assertion at once accept it once;
// Redis expires the key itself. The write is acknowledged under the same
// appendfsync rule as every other write. An unreachable Redis is an error
// wrapping [posture.ErrUnavailable], and the caller refuses the login.
func (s *Store) Seen(ctx context.Context, key string, expires, now time.Time) (bool, error) {
	ttl := max(expires.Sub(now), time.Millisecond)
	sum := sha256.Sum256([]byte(key))
	stored, err := s.c.SetNX(ctx, s.k.replay+hex.EncodeToString(sum[:]), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("%w: replay cache: %w", posture.ErrUnavailable, err)
	}
	return !stored, nil
}

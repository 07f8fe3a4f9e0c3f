package redis

import (
	"errors"
	"sync"
	"testing"
	"time"

	"portcullis/posture"
)

// TestReplayIsSharedByReplicas: a one-time id recorded through one
// replica is seen by another, two replicas racing on one id accept it
// once, Redis keeps it no longer than asked, and an unreachable Redis is
// an error (the login is refused), never "not seen".
func TestReplayIsSharedByReplicas(t *testing.T) {
	srv := startRedis(t)
	a, b := newReplica(t, srv, Config{}), newReplica(t, srv, Config{})
	ctx := t.Context()
	now := time.Now()

	tests := []struct {
		name string
		on   *replica
		key  string
		want bool
	}{
		{"first use", a, "saml:corp\x00_a1", false},
		{"same id on another replica", b, "saml:corp\x00_a1", true},
		{"same id again on the first", a, "saml:corp\x00_a1", true},
		{"same id of another provider", b, "saml:other\x00_a1", false},
		{"a logout token id", b, "oidc:corp\x00jti-1", false},
		{"that token on the first replica", a, "oidc:corp\x00jti-1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.on.Seen(ctx, tt.key, now.Add(time.Minute), now)
			if err != nil || got != tt.want {
				t.Errorf("Seen(%q) = %v, %v; want %v", tt.key, got, err, tt.want)
			}
		})
	}

	// Racing replicas: exactly one of them accepts.
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a
			if i%2 == 1 {
				r = b
			}
			seen, err := r.Seen(ctx, "saml:corp\x00_race", now.Add(time.Minute), now)
			if err != nil {
				t.Error(err)
			}
			if !seen {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("a raced id was accepted %d times, want 1", accepted)
	}

	// Redis forgets the id when it could no longer be accepted.
	c := srv.client()
	defer c.Close()
	keys, err := c.Keys(ctx, DefaultKeyPrefix+"replay:*").Result()
	if err != nil || len(keys) != 4 {
		t.Fatalf("replay keys = %d (%v), want 4", len(keys), err)
	}
	for _, k := range keys {
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s expires in %v (%v), want within a minute", k, ttl, err)
		}
	}

	srv.kill()
	seen, err := a.Seen(ctx, "saml:corp\x00_a2", now.Add(time.Minute), now)
	if !errors.Is(err, posture.ErrUnavailable) {
		t.Errorf("Seen with Redis down = %v, %v; want an error wrapping ErrUnavailable", seen, err)
	}
}

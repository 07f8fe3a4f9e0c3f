package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"portcullis/enforcement"
)

// maxBearer bounds an Authorization header's token.
const maxBearer = 16 << 10

// maxBearerCache bounds the verified-token cache.
const maxBearerCache = 10000

// bearerCache remembers verified tokens by hash until they expire, so a
// client reusing its token costs a map lookup, not a signature check.
type bearerCache struct {
	mu sync.RWMutex
	m  map[[32]byte]bearerEntry
}

type bearerEntry struct {
	sub *enforcement.Subject
	exp time.Time
}

func (c *bearerCache) get(k [32]byte, now time.Time) *enforcement.Subject {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return nil
	}
	return e.sub
}

func (c *bearerCache) put(k [32]byte, e bearerEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]bearerEntry{}
	}
	if len(c.m) >= maxBearerCache {
		for k, v := range c.m {
			if !now.Before(v.exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxBearerCache {
			clear(c.m)
		}
	}
	c.m[k] = e
}

// bearerToken returns the token of an `Authorization: Bearer` header.
func bearerToken(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(v[7:])
	return tok, tok != "" && len(tok) <= maxBearer
}

// VerifyBearer checks a JWT access token: signature by a key of the
// provider's JWKS with an allowed algorithm, issuer, audience, exp and
// nbf. It returns nil for any token that fails, and for every token when
// the provider has no bearer configuration.
func (p *Provider) VerifyBearer(ctx context.Context, tok string) *enforcement.Subject {
	if p.cfg.Bearer == nil || tok == "" {
		return nil
	}
	now := p.m.now()
	key := sha256.Sum256([]byte(tok))
	if s := p.bearer.get(key, now); s != nil {
		return s
	}
	d, err := p.discover(ctx)
	if err != nil {
		return nil
	}
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	t, err := d.bearer.Verify(ctx, tok)
	if err != nil {
		p.m.log.Debug("bearer token refused", "provider", p.cfg.Name, "error", err)
		return nil
	}
	var c claimSet
	if err := t.Claims(&c); err != nil {
		return nil
	}
	if nbf := c.time("nbf"); !nbf.IsZero() && nbf.After(now.Add(p.cfg.ClockSkew.Std())) {
		return nil
	}
	s, err := p.subject(c)
	if err != nil {
		p.m.log.Debug("bearer token refused", "provider", p.cfg.Name, "error", err)
		return nil
	}
	p.bearer.put(key, bearerEntry{sub: s, exp: t.Expiry}, now)
	return s
}

// jsonString is json.Marshal for a string, for WWW-Authenticate values.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

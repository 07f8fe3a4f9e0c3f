// Package assertion signs the identity assertion the gateway hands to
// upstreams: a short-lived ES256 JWT, sent in the X-Portcullis-Assertion
// header, that says who (user, email, groups) and what (device id and its
// CA) is calling which resource. Upstreams verify it against the JWKS the
// gateway serves, so they need not trust headers a client might forge.
//
// Signing costs tens of microseconds, too much for every proxied request,
// so a [Signer] reuses a token for the same identity until less than half
// of its lifetime remains.
package assertion

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for [Options].
const (
	DefaultIssuer    = "portcullis"
	DefaultLifetime  = 5 * time.Minute
	DefaultCacheSize = 10000
)

// KeyFile and PreviousKeyFile are the names of the key files in the
// directory given to [Open].
const (
	KeyFile         = "assertion-key.pem"
	PreviousKeyFile = "assertion-key.previous.pem"
)

// Options tune a [Signer]. The zero value is usable.
type Options struct {
	// Issuer is the "iss" claim; by default "portcullis".
	Issuer string
	// Lifetime is how long a token is valid ("exp" - "iat"); by default
	// five minutes. A retired key stays in the JWKS this long after
	// [Signer.Rotate], plus a minute for clock skew.
	Lifetime time.Duration
	// CacheSize bounds the number of cached tokens; by default 10,000.
	CacheSize int
	// Now returns the current time; by default time.Now. Tests inject a
	// clock.
	Now func() time.Time
}

// Signer issues identity assertions. It is safe for concurrent use.
type Signer struct {
	dir      string
	issuer   string
	lifetime time.Duration
	now      func() time.Time

	key   atomic.Pointer[signingKey] // the current key; swapped by Rotate
	cache *cache

	// mu serializes Rotate and JWKS rebuilds, and protects prev.
	mu   sync.Mutex
	prev *retiredKey // nil when no retired key is still published
	jwks atomic.Pointer[jwksDoc]
}

// retiredKey is a key no longer used for signing but still published
// until tokens it signed have expired.
type retiredKey struct {
	pub   *ecdsa.PublicKey
	kid   string
	until time.Time
}

// Open returns a Signer whose key is kept in dir/assertion-key.pem. The
// key is created (with dir, if needed) when the file does not exist;
// an existing key file must not be readable by group or others.
func Open(dir string, opts Options) (*Signer, error) {
	s := &Signer{
		dir:      dir,
		issuer:   opts.Issuer,
		lifetime: opts.Lifetime,
		now:      opts.Now,
	}
	if s.issuer == "" {
		s.issuer = DefaultIssuer
	}
	if s.lifetime <= 0 {
		s.lifetime = DefaultLifetime
	}
	if s.now == nil {
		s.now = time.Now
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	s.cache = newCache(size)

	priv, err := loadOrCreateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	k, err := newSigningKey(priv, 1)
	if err != nil {
		return nil, err
	}
	s.key.Store(k)

	prev, err := loadRetiredKey(filepath.Join(dir, PreviousKeyFile))
	if err != nil && !errors.Is(err, errNoKey) {
		return nil, err
	}
	if prev != nil && prev.kid != k.kid && s.now().Before(prev.until) {
		s.prev = prev
	}
	s.mu.Lock()
	s.rebuildJWKSLocked()
	s.mu.Unlock()
	return s, nil
}

// KeyID returns the "kid" of the current signing key: its RFC 7638
// thumbprint (SHA-256, base64url).
func (s *Signer) KeyID() string { return s.key.Load().kid }

// Rotate replaces the signing key with a new one and saves it. The old
// key stays in the JWKS for the token lifetime, so tokens it signed keep
// verifying; cached tokens are re-signed with the new key on next use.
func (s *Signer) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.key.Load()
	priv, err := generateKey()
	if err != nil {
		return err
	}
	k, err := newSigningKey(priv, old.gen+1)
	if err != nil {
		return err
	}
	retired := &retiredKey{pub: &old.priv.PublicKey, kid: old.kid, until: s.now().Add(s.lifetime + time.Minute)}
	// Publish the old key on disk before replacing it, so a crash in
	// between leaves both keys findable.
	if err := saveRetiredKey(filepath.Join(s.dir, PreviousKeyFile), retired); err != nil {
		return fmt.Errorf("assertion: rotate: %w", err)
	}
	if err := saveKey(filepath.Join(s.dir, KeyFile), priv); err != nil {
		return fmt.Errorf("assertion: rotate: %w", err)
	}
	s.prev = retired
	s.key.Store(k)
	s.rebuildJWKSLocked()
	return nil
}

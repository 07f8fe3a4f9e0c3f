package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// RefetchInterval is the least time between two JWKS fetches caused by an
// unknown key id: a flood of tokens with made-up key ids costs the
// provider one request per interval, not one per token.
const RefetchInterval = 30 * time.Second

// maxJWKS bounds a JWKS document.
const maxJWKS = 1 << 20

var (
	// ErrUnknownKey is a token signed with a key id the provider's JWKS
	// does not list.
	ErrUnknownKey = errors.New("token signed by an unknown key")
	// ErrBadSignature is a token whose signature does not verify.
	ErrBadSignature = errors.New("token signature does not verify")
)

// keySet is the provider's signing keys, fetched from its jwks_uri on
// first use and again only for an unknown key id, rate limited. It
// implements go-oidc's KeySet.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time
	algs   []jose.SignatureAlgorithm

	mu        sync.Mutex // serializes fetches
	keys      []jose.JSONWebKey
	fetched   bool
	lastFetch time.Time
	fetches   int // for tests and metrics
}

func newKeySet(url string, client *http.Client, now func() time.Time) *keySet {
	ks := &keySet{url: url, client: client, now: now}
	for _, a := range supportedAlgorithms {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	return ks
}

// VerifySignature verifies jwt's signature and returns its payload. The
// verifier checks the algorithm against its own list afterwards; here only
// asymmetric algorithms parse at all, so "none" and HMAC tokens fail.
func (ks *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, ks.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must have exactly one signature")
	}
	h := jws.Signatures[0].Header
	keys, err := ks.lookup(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	for i := range keys {
		k := &keys[i]
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return nil, ErrBadSignature
}

// lookup returns the keys that may have signed a token with kid (every
// key when kid is empty), fetching the JWKS when none match and the rate
// limit allows.
func (ks *keySet) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if m := match(ks.keys, kid); len(m) > 0 {
		return m, nil
	}
	if ks.fetched && ks.now().Sub(ks.lastFetch) < RefetchInterval {
		return nil, ErrUnknownKey
	}
	if err := ks.fetchLocked(ctx); err != nil {
		return nil, err
	}
	if m := match(ks.keys, kid); len(m) > 0 {
		return m, nil
	}
	return nil, ErrUnknownKey
}

func match(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	for i := range keys {
		if keys[i].KeyID == kid {
			return keys[i : i+1]
		}
	}
	return nil
}

// fetchLocked reads the JWKS. A failed fetch counts against the rate
// limit too, so an unreachable provider is not hammered.
func (ks *keySet) fetchLocked(ctx context.Context) error {
	ks.fetches++
	ks.lastFetch = ks.now()
	ks.fetched = true
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: fetching JWKS: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: fetching JWKS: status %d", ErrUnavailable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return fmt.Errorf("%w: reading JWKS: %w", ErrUnavailable, err)
	}
	if len(body) > maxJWKS {
		return errors.New("JWKS document too large")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("parsing JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		}
	}
	ks.keys = keys
	return nil
}

// Fetches returns how many times the JWKS was fetched.
func (ks *keySet) Fetches() int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.fetches
}

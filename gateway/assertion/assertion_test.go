package assertion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }

func open(t testing.TB, dir string, clk *clock) *Signer {
	t.Helper()
	s, err := Open(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var alice = Claims{
	Resource: "wiki",
	UserID:   "alice",
	Email:    "alice@example.com",
	Groups:   []string{"eng", "admins"},
	DeviceID: "3f2a9c1e-0000-4000-8000-000000000001",
	DeviceCA: "ivanti",
}

// fetchJWKS gets the key set the way an upstream would: over HTTP.
func fetchJWKS(t *testing.T, s *Signer) jose.JSONWebKeySet {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/.well-known/portcullis/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Errorf("Cache-Control = %q", cc)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

type verified struct {
	jwt.Claims
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	DeviceID string   `json:"device_id"`
	DeviceCA string   `json:"device_ca"`
}

// verify checks tok as an upstream would and returns its claims.
func verify(t *testing.T, tok string, set jose.JSONWebKeySet, now time.Time) verified {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := parsed.Headers[0].ExtraHeaders["typ"]; typ != "JWT" {
		t.Errorf("typ = %v, want JWT", typ)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", parsed.Headers[0].KeyID, len(keys))
	}
	var v verified
	if err := parsed.Claims(keys[0].Key, &v); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := v.ValidateWithLeeway(jwt.Expected{Issuer: "portcullis", AnyAudience: jwt.Audience{"wiki"}, Time: now}, 0); err != nil {
		t.Errorf("validate: %v", err)
	}
	return v
}

func TestAssertionVerifies(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	tok, err := s.Assertion(alice)
	if err != nil {
		t.Fatal(err)
	}
	set := fetchJWKS(t, s)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != s.KeyID() || set.Keys[0].Use != "sig" || set.Keys[0].Algorithm != "ES256" || !set.Keys[0].IsPublic() {
		t.Fatalf("JWKS = %+v", set.Keys)
	}
	got := verify(t, tok, set, clk.Now())
	now := clk.Now()
	want := verified{
		Claims: jwt.Claims{
			Issuer:    "portcullis",
			Subject:   "alice",
			Audience:  jwt.Audience{"wiki"},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(5 * time.Minute)),
			ID:        got.ID,
		},
		Email:    "alice@example.com",
		Groups:   []string{"eng", "admins"},
		DeviceID: alice.DeviceID,
		DeviceCA: "ivanti",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if len(got.ID) < 20 {
		t.Errorf("jti = %q, too short", got.ID)
	}
	// Expired tokens fail as they should.
	clk.Advance(6 * time.Minute)
	if err := got.ValidateWithLeeway(jwt.Expected{Time: clk.Now()}, 0); !errors.Is(err, jwt.ErrExpired) {
		t.Errorf("after expiry: %v, want ErrExpired", err)
	}
}

func TestIssuerAndLifetime(t *testing.T) {
	clk := newClock()
	s, err := Open(t.TempDir(), Options{Issuer: "https://gw.example.com", Lifetime: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Assertion(Claims{Resource: "api", DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := parsed.UnsafeClaimsWithoutVerification(&raw); err != nil {
		t.Fatal(err)
	}
	if raw["iss"] != "https://gw.example.com" {
		t.Errorf("iss = %v", raw["iss"])
	}
	if exp, iat := raw["exp"].(float64), raw["iat"].(float64); exp-iat != 60 {
		t.Errorf("exp - iat = %v, want 60", exp-iat)
	}
	for _, k := range []string{"sub", "email", "groups"} {
		if _, ok := raw[k]; ok {
			t.Errorf("device-only token has %q", k)
		}
	}
}

func TestCache(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	first, _ := s.Assertion(alice)

	// Same identity, different slice: reused.
	again := alice
	again.Groups = []string{"eng", "admins"}
	if tok, _ := s.Assertion(again); tok != first {
		t.Error("same claims: token not reused")
	}
	// The cache keeps its own copy of Groups.
	again.Groups[0] = "mutated"
	if tok, _ := s.Assertion(alice); tok != first {
		t.Error("caller's slice change affected the cache")
	}

	tests := []struct {
		name   string
		change func(*Claims)
	}{
		{"resource", func(c *Claims) { c.Resource = "git" }},
		{"user", func(c *Claims) { c.UserID = "bob" }},
		{"email", func(c *Claims) { c.Email = "a@example.org" }},
		{"groups order", func(c *Claims) { c.Groups = []string{"admins", "eng"} }},
		{"groups fewer", func(c *Claims) { c.Groups = []string{"eng"} }},
		{"groups split", func(c *Claims) { c.Groups = []string{"eng", "adm", "ins"} }},
		{"device", func(c *Claims) { c.DeviceID = "other" }},
		{"device ca", func(c *Claims) { c.DeviceCA = "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := alice
			c.Groups = append([]string(nil), alice.Groups...)
			tt.change(&c)
			if tok, _ := s.Assertion(c); tok == first {
				t.Error("different claims got the same token")
			}
		})
	}

	// Reused until less than half the lifetime remains.
	clk.Advance(2*time.Minute + 29*time.Second)
	if tok, _ := s.Assertion(alice); tok != first {
		t.Error("token refreshed before half its lifetime")
	}
	clk.Advance(time.Second)
	second, _ := s.Assertion(alice)
	if second == first {
		t.Error("token not refreshed at half its lifetime")
	}
	verify(t, second, fetchJWKS(t, s), clk.Now())
}

func TestCacheBounded(t *testing.T) {
	clk := newClock()
	s, err := Open(t.TempDir(), Options{Now: clk.Now, CacheSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := s.Assertion(Claims{Resource: "r", UserID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 32 {
		t.Errorf("cache holds %d tokens, bound is 32", n)
	}
}

func TestCacheCollision(t *testing.T) {
	// Two identities forced onto one key must not share a token.
	c := newCache(10)
	a, b := alice, alice
	b.UserID = "mallory"
	c.put(1, &a, "token-a", 1, time.Unix(100, 0))
	if _, ok := c.get(1, &b, 1, time.Unix(0, 0)); ok {
		t.Fatal("collision returned another identity's token")
	}
	if tok, ok := c.get(1, &a, 1, time.Unix(0, 0)); !ok || tok != "token-a" {
		t.Fatal("lost the entry")
	}
	if _, ok := c.get(1, &a, 2, time.Unix(0, 0)); ok {
		t.Fatal("token of an old key generation reused")
	}
}

func TestConcurrent(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c := Claims{Resource: "r", UserID: fmt.Sprint(i % 20), Groups: []string{fmt.Sprint(g % 2)}}
				if _, err := s.Assertion(c); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := s.Rotate(); err != nil {
			t.Error(err)
		}
		s.JWKS()
	})
	wg.Wait()
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	clk := newClock()
	s1 := open(t, dir, clk)
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}
	tok, _ := s1.Assertion(alice)

	s2 := open(t, dir, clk)
	if s2.KeyID() != s1.KeyID() {
		t.Fatalf("kid changed across Open: %s -> %s", s1.KeyID(), s2.KeyID())
	}
	verify(t, tok, fetchJWKS(t, s2), clk.Now())
}

func TestKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, newClock())
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("Open with a 0644 key: %v, want ErrKeyPermissions", err)
	}
}

func TestBadKeyFile(t *testing.T) {
	for _, content := range []string{"", "garbage", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, Options{}); err == nil {
			t.Errorf("Open accepted key file %q", content)
		}
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, clk)
	oldKid := s.KeyID()
	oldTok, _ := s.Assertion(alice)

	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if s.KeyID() == oldKid {
		t.Fatal("kid unchanged by Rotate")
	}
	newTok, _ := s.Assertion(alice)
	if newTok == oldTok {
		t.Error("cached token of the old key reused after Rotate")
	}
	set := fetchJWKS(t, s)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS after Rotate has %d keys, want 2", len(set.Keys))
	}
	verify(t, oldTok, set, clk.Now())
	verify(t, newTok, set, clk.Now())

	// The retired key survives a restart while it is still published.
	s2 := open(t, dir, clk)
	if s2.KeyID() != s.KeyID() {
		t.Error("rotated key not persisted")
	}
	if n := len(fetchJWKS(t, s2).Keys); n != 2 {
		t.Errorf("JWKS after reopen has %d keys, want 2", n)
	}

	// And leaves once every token it signed has expired.
	clk.Advance(6*time.Minute + time.Second)
	for _, sig := range []*Signer{s, s2, open(t, dir, clk)} {
		set := fetchJWKS(t, sig)
		if len(set.Keys) != 1 || set.Keys[0].KeyID != s.KeyID() {
			t.Errorf("JWKS after the old key's lifetime: %d keys", len(set.Keys))
		}
	}
}

func TestHandler(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	h := s.Handler()

	r := httptest.NewRequest("POST", "/jwks.json", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", w.Code)
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/jwks.json", nil))
	body, _ := io.ReadAll(w.Body)
	if string(body) != string(s.JWKS()) {
		t.Error("body differs from JWKS()")
	}
	etag := w.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	r = httptest.NewRequest("GET", "/jwks.json", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
}

func TestCachedAllocs(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	if _, err := s.Assertion(alice); err != nil {
		t.Fatal(err)
	}
	got := testing.AllocsPerRun(1000, func() {
		s.Assertion(alice)
	})
	if got > 1 {
		t.Errorf("cached Assertion allocates %.0f objects, want at most 1", got)
	}
}

func BenchmarkAssertionCached(b *testing.B) {
	s := open(b, b.TempDir(), newClock())
	s.Assertion(alice)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Assertion(alice); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAssertionCachedParallel(b *testing.B) {
	s := open(b, b.TempDir(), newClock())
	s.Assertion(alice)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Assertion(alice)
		}
	})
}

func BenchmarkAssertionSign(b *testing.B) {
	s := open(b, b.TempDir(), newClock())
	k := s.key.Load()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sign(k, &alice, now); err != nil {
			b.Fatal(err)
		}
	}
}

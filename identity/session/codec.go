package session

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"portcullis/enforcement"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// CookiePrefix starts every session cookie name.
const CookiePrefix = "__Host-pc_s"

var (
	// ErrNoSession is a request without a session cookie.
	ErrNoSession = errors.New("no session cookie")
	// ErrExpired is a session past its absolute lifetime.
	ErrExpired = errors.New("session expired")
	// ErrIdle is a session unused for longer than the idle timeout.
	ErrIdle = errors.New("session idle for too long")
	// ErrRevoked is a session revoked by id, or whose user was revoked
	// after it authenticated.
	ErrRevoked = errors.New("session revoked")
)

// Revocations is what the codec asks the posture store on every decode.
type Revocations = enforcement.UserRevocations

// Codec seals sessions into cookie values and opens them again. It is safe
// for concurrent use.
type Codec struct {
	name     string
	keys     []sealKey // keys[0] seals
	lifetime time.Duration
	idle     time.Duration
	revs     Revocations
}

type sealKey struct {
	id   [4]byte
	aad  []byte // cookie name and key id: a value cannot move between cookies
	aead cipher.AEAD
}

const (
	nonceSize = chacha20poly1305.NonceSizeX
	overhead  = 4 + nonceSize + chacha20poly1305.Overhead
	// maxCookie bounds a cookie value before anything is decoded.
	maxCookie = 4096
)

// NewCodec returns a codec for the cookie named name, which must start
// with [CookiePrefix]. keys come from [LoadKeyFile]; revs may be nil (no
// revocation check). cfg's zero durations take their defaults.
func NewCodec(name string, keys [][]byte, cfg Config, revs Revocations) (*Codec, error) {
	if !strings.HasPrefix(name, CookiePrefix) || len(name) > 64 || !validCookieName(name) {
		return nil, fmt.Errorf("invalid session cookie name %q", name)
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	cfg.ApplyDefaults()
	c := &Codec{name: name, lifetime: cfg.Lifetime.Std(), idle: cfg.IdleTimeout.Std(), revs: revs}
	for _, k := range keys {
		a, err := chacha20poly1305.NewX(k)
		if err != nil {
			return nil, fmt.Errorf("session key: %w", err)
		}
		id := keyID(k)
		c.keys = append(c.keys, sealKey{id: id, aad: append([]byte(name), id[:]...), aead: a})
	}
	return c, nil
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Name returns the cookie name.
func (c *Codec) Name() string { return c.name }

// Lifetime returns the absolute session lifetime.
func (c *Codec) Lifetime() time.Duration { return c.lifetime }

// New starts a session for a login completed at now: it sets the times
// (the absolute end is capped at notAfter when that is not zero) and
// leaves the identity to the caller.
func (c *Codec) New(id string, now, notAfter time.Time) *Session {
	s := &Session{Issued: now, Refreshed: now, Expires: now.Add(c.lifetime)}
	if !notAfter.IsZero() && notAfter.Before(s.Expires) {
		s.Expires = notAfter
	}
	s.Subject.SessionID = id
	return s
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 3*maxCookie); return &b }}

// Seal encrypts s into a cookie value.
func (c *Codec) Seal(s *Session) (string, error) {
	plain := appendSession(make([]byte, 0, 512), s)
	if len(plain) > maxPlain {
		return "", ErrTooLarge
	}
	k := &c.keys[0]
	out := make([]byte, 4+nonceSize, overhead+len(plain))
	copy(out, k.id[:])
	rand.Read(out[4:])
	out = k.aead.Seal(out, out[4:4+nonceSize], plain, k.aad)
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts and checks a cookie value at now: expiry, idle timeout
// and revocations. Every failure is one of the package's errors, and
// means the user must log in again.
func (c *Codec) Open(value string, now time.Time) (*Session, error) {
	if len(value) > maxCookie || len(value) < base64.RawURLEncoding.EncodedLen(overhead+1) {
		return nil, ErrMalformed
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	raw := append(buf[:0], value...)
	sealed := buf[maxCookie : 2*maxCookie]
	n, err := base64.RawURLEncoding.Decode(sealed, raw)
	if err != nil {
		return nil, ErrMalformed
	}
	sealed = sealed[:n]
	k := c.key(sealed[:4])
	if k == nil {
		return nil, ErrMalformed
	}
	plain, err := k.aead.Open(buf[2*maxCookie:2*maxCookie], sealed[4:4+nonceSize], sealed[4+nonceSize:], k.aad)
	if err != nil {
		return nil, ErrMalformed
	}
	s, err := parseSession(plain)
	if err != nil {
		return nil, err
	}
	if err := c.check(s, now); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Codec) key(id []byte) *sealKey {
	for i := range c.keys {
		k := &c.keys[i]
		if k.id[0] == id[0] && k.id[1] == id[1] && k.id[2] == id[2] && k.id[3] == id[3] {
			return k
		}
	}
	return nil
}

// check applies the lifetimes and the revocations.
func (c *Codec) check(s *Session, now time.Time) error {
	if !now.Before(s.Expires) {
		return ErrExpired
	}
	if c.idle > 0 && now.Sub(s.Refreshed) > c.idle {
		return ErrIdle
	}
	if c.revs != nil && enforcement.SubjectRevocations(c.revs, &s.Subject) != 0 {
		return ErrRevoked
	}
	return nil
}

// NeedsRefresh reports whether the cookie of s should be re-issued at
// now to push back its idle deadline: at most once per [RefreshInterval].
func (c *Codec) NeedsRefresh(s *Session, now time.Time) bool {
	return c.idle > 0 && now.Sub(s.Refreshed) >= RefreshInterval
}

// Read finds the codec's cookie in r and opens it.
func (c *Codec) Read(r *http.Request, now time.Time) (*Session, error) {
	v, ok := CookieValue(r.Header, c.name)
	if !ok {
		return nil, ErrNoSession
	}
	return c.Open(v, now)
}

// Cookie returns the cookie carrying value, expiring with s.
func (c *Codec) Cookie(value string, s *Session) *http.Cookie {
	return &http.Cookie{Name: c.name, Value: value, Path: "/", Expires: s.Expires.UTC(),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// Write seals s and sets its cookie on w.
func (c *Codec) Write(w http.ResponseWriter, s *Session) error {
	v, err := c.Seal(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, c.Cookie(v, s))
	return nil
}

// Clear sets a cookie on w that deletes the session cookie.
func (c *Codec) Clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: c.name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// CookieValue returns the value of the first cookie called name in h,
// without allocating.
func CookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				return strings.TrimRight(part[len(name)+1:], " \t"), true
			}
		}
	}
	return "", false
}

// StripCookies removes from h every cookie whose name starts with prefix,
// so that the gateway's own cookies never reach an upstream. It allocates
// only when there is something to remove.
func StripCookies(h http.Header, prefix string) {
	lines := h["Cookie"]
	found := false
	for _, l := range lines {
		if strings.Contains(l, prefix) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if part != "" && !strings.HasPrefix(part, prefix) {
				kept = append(kept, part)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

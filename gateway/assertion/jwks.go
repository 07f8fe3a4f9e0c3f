package assertion

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksDoc is the rendered key set.
type jwksDoc struct {
	body  []byte
	etag  string
	until time.Time // rebuild from here on (a retired key expires); zero: never
}

// JWKS returns the JSON Web Key Set that verifies assertions: the current
// key and, for a token lifetime after [Signer.Rotate], the previous one.
// The caller must not modify the returned slice.
func (s *Signer) JWKS() []byte {
	d := s.jwks.Load()
	if !d.until.IsZero() && !s.now().Before(d.until) {
		s.mu.Lock()
		if s.prev != nil && !s.now().Before(s.prev.until) {
			s.prev = nil
		}
		s.rebuildJWKSLocked()
		d = s.jwks.Load()
		s.mu.Unlock()
	}
	return d.body
}

func (s *Signer) rebuildJWKSLocked() {
	k := s.key.Load()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{publicJWK(&k.priv.PublicKey, k.kid)}}
	var until time.Time
	if s.prev != nil {
		set.Keys = append(set.Keys, publicJWK(s.prev.pub, s.prev.kid))
		until = s.prev.until
	}
	body, err := json.Marshal(set)
	if err != nil {
		// Marshalling a P-256 public key cannot fail; keep serving the
		// old document if it somehow does.
		return
	}
	sum := sha256.Sum256(body)
	s.jwks.Store(&jwksDoc{body: body, etag: `"` + b64.EncodeToString(sum[:16]) + `"`, until: until})
}

func publicJWK(pub any, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// JWKSMaxAge is how long clients may cache the JWKS. It is short because
// a rotated-in key signs at once; verifiers should also refetch the set
// when they meet an unknown "kid".
const JWKSMaxAge = time.Minute

var jwksCacheControl = "public, max-age=" + strconv.Itoa(int(JWKSMaxAge/time.Second))

// Handler returns an http.Handler that serves the JWKS (GET and HEAD),
// at whatever path the caller mounts it, conventionally
// /.well-known/portcullis/jwks.json.
func (s *Signer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.JWKS() // refreshes the document if a retired key expired
		d := s.jwks.Load()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", jwksCacheControl)
		h.Set("ETag", d.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if match := r.Header.Get("If-None-Match"); match != "" && match == d.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(d.body)
	})
}

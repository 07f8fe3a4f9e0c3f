package feeds

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// RFC 8935 error codes, the err member of a push error and of a poll
// setErrs entry.
const (
	SETInvalidRequest  = "invalid_request"
	SETInvalidKey      = "invalid_key"
	SETInvalidIssuer   = "invalid_issuer"
	SETInvalidAudience = "invalid_audience"
	SETAuthFailed      = "authentication_failed"
	SETAccessDenied    = "access_denied"
	SETInvalidState    = "invalid_state"
)

// A SETError says why a Security Event Token was refused.
type SETError struct {
	Code        string `json:"err"`
	Description string `json:"description"`
	// RetryAfter, when set, says the SET was not refused for what it is
	// but for a passing condition (its key cannot be had yet): it is to be
	// delivered again after that long, not reported as an error.
	RetryAfter time.Duration `json:"-"`
}

func (e *SETError) Error() string { return "feeds: SET refused: " + e.Code + ": " + e.Description }

func setErr(code, format string, args ...any) *SETError {
	return &SETError{Code: code, Description: fmt.Sprintf(format, args...)}
}

// SETAlgorithms are the signature algorithms a SET may use: asymmetric
// only, never none or HS*.
var SETAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512}

// maxSET bounds a compact SET.
const maxSET = 64 << 10

// SET is a verified Security Event Token (RFC 8417 as profiled by SSF).
type SET struct {
	Issuer   string
	JTI      string
	IssuedAt time.Time
	Audience []string
	TxN      string
	SubID    *Subject // top-level sub_id; nil when the event has a subject
	// Events maps the event type URI to its event object: exactly one.
	Events map[string]json.RawMessage

	eventType string    // the one event's type URI
	event     caepEvent // the one event, decoded strictly
}

// setClaims are a SET's claims as far as their names are checked
// ([checkStrict]): the registered claims and SSF's sub_id and events.
type setClaims struct {
	Iss    json.RawMessage            `json:"iss"`
	Sub    json.RawMessage            `json:"sub"`
	Aud    json.RawMessage            `json:"aud"`
	Iat    json.RawMessage            `json:"iat"`
	Exp    json.RawMessage            `json:"exp"`
	Nbf    json.RawMessage            `json:"nbf"`
	JTI    json.RawMessage            `json:"jti"`
	Toe    json.RawMessage            `json:"toe"`
	TxN    json.RawMessage            `json:"txn"`
	SubID  *Subject                   `json:"sub_id"`
	Events map[string]json.RawMessage `json:"events"`
}

// setVerifier checks SETs against one transmitter.
type setVerifier struct {
	issuer    string
	audience  string
	tolerance time.Duration
	keys      *keySet
	now       func() time.Time
}

// verify checks a compact SET's header, signature and claims, in that
// order; no claim is read before the signature verifies. arrived is when
// the SET reached the gateway. A SET whose key cannot be had yet is
// refused with RetryAfter set: the sender is to deliver it again.
func (v *setVerifier) verify(ctx context.Context, token string, arrived time.Time) (*SET, *SETError) {
	token = strings.TrimSpace(token)
	if len(token) > maxSET {
		return nil, setErr(SETInvalidRequest, "the SET is larger than %d bytes", maxSET)
	}
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		return nil, setErr(SETInvalidKey, "encrypted SETs are not supported")
	default:
		return nil, setErr(SETInvalidRequest, "not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(token, SETAlgorithms)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, setErr(SETInvalidRequest, "signature algorithm %q is not allowed", clip(string(alg.Got)))
		}
		return nil, setErr(SETInvalidRequest, "not a compact JWS")
	}
	if len(jws.Signatures) != 1 {
		return nil, setErr(SETInvalidRequest, "want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.TrimPrefix(strings.ToLower(typ), "application/")
	if typ != "secevent+jwt" {
		return nil, setErr(SETInvalidRequest, "typ must be secevent+jwt")
	}
	if h.JSONWebKey != nil {
		return nil, setErr(SETInvalidKey, "embedded jwk headers are not trusted")
	}
	key, err := v.keys.key(ctx, h.KeyID, h.Algorithm, arrived)
	if err != nil {
		e := setErr(SETInvalidKey, "%v", err)
		var retry *keyRetryError
		if errors.As(err, &retry) {
			e.RetryAfter = retry.After
		} else {
			e.RetryAfter = keyRefetchMin // the request ended: try again
		}
		return nil, e
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, setErr(SETInvalidKey, "the signature does not verify")
	}
	return v.claims(payload)
}

func (v *setVerifier) claims(payload []byte) (*SET, *SETError) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return nil, setErr(SETInvalidRequest, "the claims are not a JSON object")
	}
	if err := checkStrict(payload, reflect.TypeFor[setClaims]()); err != nil {
		return nil, setErr(SETInvalidRequest, "claims: %v", err)
	}
	if _, ok := c["sub"]; ok {
		return nil, setErr(SETInvalidRequest, "sub must not be present in a SET (use sub_id)")
	}
	if _, ok := c["exp"]; ok {
		return nil, setErr(SETInvalidRequest, "exp must not be present in a SET")
	}
	var s SET
	if json.Unmarshal(c["iss"], &s.Issuer) != nil || s.Issuer != v.issuer {
		return nil, setErr(SETInvalidIssuer, "iss is not %q", v.issuer)
	}
	var one string
	if json.Unmarshal(c["aud"], &one) == nil {
		s.Audience = []string{one}
	} else if json.Unmarshal(c["aud"], &s.Audience) != nil {
		s.Audience = nil
	}
	if !contains(s.Audience, v.audience) {
		return nil, setErr(SETInvalidAudience, "aud does not contain %q", v.audience)
	}
	var iat float64
	if json.Unmarshal(c["iat"], &iat) != nil || iat <= 0 || iat > 1e11 {
		return nil, setErr(SETInvalidRequest, "iat is missing or not a NumericDate")
	}
	s.IssuedAt = time.Unix(int64(iat), 0).UTC()
	if s.IssuedAt.After(v.now().Add(v.tolerance)) {
		return nil, setErr(SETInvalidRequest, "iat is in the future")
	}
	if json.Unmarshal(c["jti"], &s.JTI) != nil || s.JTI == "" || len(s.JTI) > 256 {
		return nil, setErr(SETInvalidRequest, "jti is missing or longer than 256 bytes")
	}
	if raw, ok := c["txn"]; ok {
		json.Unmarshal(raw, &s.TxN)
	}
	if raw, ok := c["sub_id"]; ok {
		if json.Unmarshal(raw, &s.SubID) != nil || s.SubID == nil || s.SubID.Format == "" {
			return nil, setErr(SETInvalidRequest, "sub_id is not a subject identifier")
		}
	}
	if json.Unmarshal(c["events"], &s.Events) != nil || len(s.Events) == 0 {
		return nil, setErr(SETInvalidRequest, "events is missing or empty")
	}
	if len(s.Events) != 1 {
		// SSF 1.0: a SET carries exactly one event. Applying several
		// would let one signed token stand for events its issuer never
		// sent together.
		return nil, setErr(SETInvalidRequest, "events holds %d events; a SET carries exactly one", len(s.Events))
	}
	for uri, raw := range s.Events {
		if len(raw) == 0 || raw[0] != '{' {
			return nil, setErr(SETInvalidRequest, "event %q is not an object", clip(uri))
		}
		s.eventType = uri
		var err error
		if knownEvent(uri) {
			err = decodeStrict(raw, &s.event)
		} else {
			// Only the subject of an event type we do not act on is read.
			var ev struct {
				Subject *Subject `json:"subject"`
			}
			err = decodeStrict(raw, &ev)
			s.event.Subject = ev.Subject
		}
		if err != nil {
			return nil, setErr(SETInvalidRequest, "event %q: %v", clip(uri), err)
		}
	}
	if s.event.Subject != nil && s.event.Subject.Format == "" {
		return nil, setErr(SETInvalidRequest, "the event's subject is not a subject identifier")
	}
	if s.SubID == nil && s.event.Subject == nil {
		return nil, setErr(SETInvalidRequest, "sub_id is missing, and the event has no subject")
	}
	return &s, nil
}

// knownEvent reports whether the receiver reads the members of events of
// type uri.
func knownEvent(uri string) bool {
	return uri == EventVerification || uri == EventStreamUpdated || contains(SSFEventTypes, uri)
}

// keyRefetchMin is the least time between two JWKS fetches that unknown
// kids cause. It protects the transmitter from a flood of tokens with
// made-up kids, and is short so that a key rotation costs a sender one
// retry at most.
const keyRefetchMin = 2 * time.Second

// maxJWKS bounds a JWKS document.
const maxJWKS = 1 << 20

// A keyRetryError says that a token's key cannot be had now but may be
// soon: the key set could not be fetched, or it was fetched too recently
// to fetch again, or the kid is not in a set fetched after the token
// arrived (a transmitter may sign with a new key before it publishes
// it). The token is not refused: the sender should retry after After.
type keyRetryError struct {
	msg   string
	After time.Duration
}

func (e *keyRetryError) Error() string { return e.msg }

// keySet is a transmitter's cached JWKS. A token whose kid is unknown
// causes a refetch when no fetch started after the token arrived; such
// fetches are coalesced (concurrent callers wait for one) and at least
// keyRefetchMin apart. When the kid is still unknown, key returns a
// *keyRetryError, so that a key rotation never loses a token: its sender
// retries and a later fetch finds the key.
type keySet struct {
	url    func(ctx context.Context) (string, error)
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex // guards the fields below
	keys     []jose.JSONWebKey
	started  time.Time     // when the last fetch started; zero if none
	inflight chan struct{} // closed when the running fetch ends; nil if none
	fetches  int
}

// key returns the public key for kid (any usable key when kid is empty
// and the set has exactly one) for a token that arrived at arrived,
// fetching the set when the kid is unknown.
func (k *keySet) key(ctx context.Context, kid, alg string, arrived time.Time) (any, error) {
	for {
		k.mu.Lock()
		if key, ok := k.findLocked(kid, alg); ok {
			k.mu.Unlock()
			return key, nil
		}
		if wait := k.inflight; wait != nil {
			// Another caller is fetching: its result answers this one.
			k.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		now := k.now()
		switch {
		case !k.started.IsZero() && !k.started.Before(arrived):
			// The set was fetched after the token arrived and lacks
			// the key.
			k.mu.Unlock()
			return nil, &keyRetryError{msg: fmt.Sprintf("key %q is not in the transmitter's key set", clip(kid)), After: keyRefetchMin}
		case !k.started.IsZero() && now.Sub(k.started) < keyRefetchMin:
			k.mu.Unlock()
			return nil, &keyRetryError{msg: fmt.Sprintf("key %q is unknown and the key set was fetched moments ago", clip(kid)),
				After: keyRefetchMin - now.Sub(k.started)}
		}
		done := make(chan struct{})
		k.inflight, k.started = done, now
		k.fetches++
		k.mu.Unlock()

		keys, err := k.fetch(ctx)

		k.mu.Lock()
		if err == nil {
			k.keys = keys
		}
		k.inflight = nil
		close(done)
		k.mu.Unlock()
		if err != nil {
			return nil, &keyRetryError{msg: err.Error(), After: keyRefetchMin}
		}
	}
}

func (k *keySet) findLocked(kid, alg string) (any, bool) {
	var found []any
	for i := range k.keys {
		jk := &k.keys[i]
		if kid != "" && jk.KeyID != kid {
			continue
		}
		if jk.Use != "" && jk.Use != "sig" || jk.Algorithm != "" && jk.Algorithm != alg {
			continue
		}
		switch pub := jk.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				continue
			}
			if !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") {
				continue
			}
		case *ecdsa.PublicKey:
			if !strings.HasPrefix(alg, "ES") {
				continue
			}
		default:
			continue // symmetric or private keys are never used
		}
		found = append(found, jk.Key)
	}
	if len(found) == 1 || kid != "" && len(found) > 0 {
		return found[0], true
	}
	return nil, false
}

// fetch reads the key set; it is called without k.mu held.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	u, err := k.url(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching keys: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS))
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decoding keys: %w", err)
	}
	return set.Keys, nil
}

// fetchCount returns how many times the set was fetched.
func (k *keySet) fetchCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetches
}

package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"portcullis/posture"
)

// LogoutTokenType is the typ of a Universal Logout (global token
// revocation) request token.
const LogoutTokenType = "global-token-revocation+jwt"

// UniversalLogout is the endpoint Okta Universal Logout calls to log a
// user out everywhere: a POST whose body names the user (member "subject"
// in Okta's guide, "sub_id" in the IETF draft), authenticated by a static
// bearer token or by a token signed by the configured issuer. It revokes
// every session of the user issued before the request and answers 204.
// Safe for concurrent use.
type UniversalLogout struct {
	name     string
	path     string
	maxBody  int64
	secrets  [][]byte
	issuer   string
	audience string
	clientID string
	skew     time.Duration
	keys     keySet
	subjects subjects
	db       *posture.DB
	log      *slog.Logger
	now      func() time.Time
	m        *Metrics
	client   *http.Client
	health   health
	warns    warnLimiter
}

// NewUniversalLogout builds the Universal Logout endpoint described by
// cfg, reading its secret file.
func NewUniversalLogout(cfg posture.FeedConfig, db *posture.DB, opts Options) (*UniversalLogout, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: %w", cfg.Name, err)
	}
	if cfg.Type != posture.FeedUniversalLogout {
		return nil, fmt.Errorf("feeds: feed %q has type %q, not %q", cfg.Name, cfg.Type, posture.FeedUniversalLogout)
	}
	if db == nil {
		return nil, errors.New("feeds: no posture store")
	}
	u := &UniversalLogout{
		name: cfg.Name, path: cfg.Path, maxBody: cfg.MaxBody, issuer: cfg.Issuer,
		audience: cfg.Audience, clientID: cfg.ClientID, skew: posture.DefaultUniversalLogoutSkew, db: db,
	}
	var err error
	if u.secrets, err = readAuthSecrets(cfg.AuthorizationSecrets()); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: authorization_file: %w", cfg.Name, err)
	}
	if err := opts.fill(&u.log, &u.now, &u.m, &u.client, cfg.Name); err != nil {
		return nil, err
	}
	jwks := cfg.JWKSURL
	if jwks == "" && cfg.Issuer != "" {
		jwks = strings.TrimRight(cfg.Issuer, "/") + "/oauth2/v1/keys"
	}
	u.keys = keySet{url: func(context.Context) (string, error) { return jwks, nil }, client: u.client, now: u.now}
	u.subjects = subjects{userFrom: cfg.UserFrom, issuers: []string{cfg.Issuer}}
	u.health.init(u.name, posture.FeedUniversalLogout, u.m)
	return u, nil
}

// Name returns the feed's name, the source of the revocations it stores.
func (u *UniversalLogout) Name() string { return u.name }

// Path returns the URL path the endpoint is served at.
func (u *UniversalLogout) Path() string { return u.path }

// Health reports the endpoint's counters.
func (u *UniversalLogout) Health() FeedHealth { return u.health.snapshot() }

// Run waits for ctx to end: the endpoint has no background work.
func (u *UniversalLogout) Run(ctx context.Context) error { return waitDone(ctx) }

// ServeHTTP checks the token, then the body, revokes the user's sessions
// and answers 204 once the revocation is durable; 401 for a bad token,
// 400 for a malformed body or an unknown subject format, 404 when the
// subject names no user of ours.
func (u *UniversalLogout) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		u.reject(rw, r, http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "use POST")
		return
	}
	arrived := u.now()
	tok, ok := bearer(r.Header.Get("Authorization"))
	var jti string
	switch {
	case !ok:
		ok = false
	case matchSecret(u.secrets, tok):
	case u.issuer != "":
		var err error
		if jti, err = u.verifyToken(r.Context(), tok, arrived); err != nil {
			var retry *keyRetryError
			if errors.As(err, &retry) {
				// The issuer's key cannot be had yet (a rotation): ask
				// for a retry rather than refuse a logout for good.
				rw.Header().Set("Retry-After", retryAfter(retry.After))
				u.reject(rw, r, http.StatusServiceUnavailable, ReasonKeyUnavailable, "the token's signing key cannot be had yet; retry later")
				return
			}
			u.warns.warn(u.log, u.now(), "universal logout token refused", "err", err)
			ok = false
		}
	default:
		ok = false
	}
	if !ok {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		u.reject(rw, r, http.StatusUnauthorized, ReasonBadAuthorization, "missing or invalid bearer token")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		u.reject(rw, r, http.StatusUnsupportedMediaType, ReasonUnsupportedMedia, "Content-Type must be application/json")
		return
	}
	body, status, reason, detail := readLimited(rw, r, u.maxBody)
	if reason != "" {
		u.reject(rw, r, status, reason, detail)
		return
	}
	var req struct {
		Subject *Subject `json:"subject"`
		SubID   *Subject `json:"sub_id"`
	}
	if err := decodeStrict(body, &req); err != nil {
		detail := "the body is not a JSON object"
		var ke *KeyError
		if errors.As(err, &ke) {
			detail = ke.Error()
		}
		u.reject(rw, r, http.StatusBadRequest, ReasonInvalidPayload, detail)
		return
	}
	subj := req.SubID
	if subj == nil {
		subj = req.Subject
	}
	if subj == nil || !knownFormat(subj.Format) {
		u.reject(rw, r, http.StatusBadRequest, ReasonBadSubject, "the body needs a sub_id (or subject) of a known format")
		return
	}
	user := u.subjects.resolve(subj, false).user
	if user == "" {
		u.reject(rw, r, http.StatusNotFound, ReasonUnknownUser, "the subject names no user of this gateway")
		return
	}
	now := u.now()
	if jti == "" {
		jti = randomHex()
	}
	out, err := u.db.ApplyRevocations(r.Context(), []posture.RevocationEvent{{Revocation: posture.Revocation{
		Kind: posture.RevokeUser, User: user, Before: now, Reasons: []string{"universal_logout"},
		Source: u.name, EventID: jti, ObservedAt: now,
	}}})
	if err != nil {
		status, reason := storeFailure(err)
		u.log.Error("universal logout not stored", "user_id", user, "err", err)
		u.reject(rw, r, status, reason, "the revocation was not stored; retry later")
		return
	}
	u.m.events.WithLabelValues(u.name, out[0].String()).Inc()
	u.m.requests.WithLabelValues(u.name, "204").Inc()
	u.health.stored(1, now)
	u.log.Info("universal logout", "user_id", user, "result", out[0].String())
	rw.WriteHeader(http.StatusNoContent)
}

func knownFormat(f string) bool {
	switch f {
	case "email", "account", "iss_sub", "opaque", "aliases", "phone_number", "did", "uri", "complex":
		return true
	}
	return false
}

// verifyToken checks a signed Universal Logout token and returns its jti.
func (u *UniversalLogout) verifyToken(ctx context.Context, tok string, arrived time.Time) (string, error) {
	if len(tok) > maxSET || strings.Count(tok, ".") != 2 {
		return "", errors.New("not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(tok, SETAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return "", errors.New("not a compact JWS with an allowed algorithm")
	}
	h := jws.Signatures[0].Protected
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if strings.TrimPrefix(strings.ToLower(typ), "application/") != LogoutTokenType || h.JSONWebKey != nil {
		return "", errors.New("typ must be " + LogoutTokenType)
	}
	key, err := u.keys.key(ctx, h.KeyID, h.Algorithm, arrived)
	if err != nil {
		return "", err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return "", errors.New("the signature does not verify")
	}
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp float64         `json:"exp"`
		Nbf float64         `json:"nbf"`
		Iat float64         `json:"iat"`
		JTI string          `json:"jti"`
	}
	if err := decodeStrict(payload, &c); err != nil {
		return "", fmt.Errorf("the claims are not a strict JSON object: %w", err)
	}
	var auds []string
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		auds = []string{one}
	} else {
		json.Unmarshal(c.Aud, &auds)
	}
	now := u.now()
	at := func(f float64) time.Time { return time.Unix(int64(f), 0) }
	switch {
	case c.Iss != u.issuer:
		return "", errors.New("wrong iss")
	case c.Sub != u.clientID:
		return "", errors.New("sub is not our client_id")
	case !contains(auds, u.audience):
		return "", errors.New("aud is not this endpoint")
	case c.Exp <= 0 || !now.Before(at(c.Exp).Add(u.skew)):
		return "", errors.New("expired or no exp")
	case c.Nbf > 0 && now.Add(u.skew).Before(at(c.Nbf)):
		return "", errors.New("not yet valid")
	case c.Iat > 0 && now.Add(u.skew).Before(at(c.Iat)):
		return "", errors.New("iat in the future")
	case c.JTI == "" || len(c.JTI) > 256:
		return "", errors.New("no jti")
	}
	return "jti:" + c.JTI, nil
}

func (u *UniversalLogout) reject(rw http.ResponseWriter, r *http.Request, status int, reason, detail string) {
	u.health.reject()
	u.health.fail(reason, u.now())
	u.m.requests.WithLabelValues(u.name, strconv.Itoa(status)).Inc()
	u.m.rejections.WithLabelValues(u.name, reason).Inc()
	u.warns.warn(u.log, u.now(), "feed request refused", "reason", reason, "status", status, "remote_addr", r.RemoteAddr)
	writeProblem(rw, status, reason, detail)
}

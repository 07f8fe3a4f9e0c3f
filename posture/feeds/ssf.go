package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"portcullis/internal/conf"
	"portcullis/posture"
)

// JTITTL is how long a SET's jti is remembered (ssf.md §12: at least 7
// days). A SET issued longer ago than that is accepted and ignored, so a
// replay outside the window changes nothing.
const JTITTL = 7 * 24 * time.Hour

// SSF is the OpenID Shared Signals receiver: it accepts pushed SETs
// (RFC 8935) at its path and, with delivery "poll", polls the transmitter
// (RFC 8936) in Run. Every SET is verified against the transmitter's
// JWKS before any claim is read; CAEP and RISC events become risk,
// posture and revocation records. Safe for concurrent use.
type SSF struct {
	name     string
	path     string
	delivery posture.Delivery
	maxBody  int64
	secrets  [][]byte    // accepted push bearer tokens
	token    conf.Secret // sent on poll and stream management
	interval time.Duration
	manage   bool
	events   []string
	endpoint string // our push URL
	db       *posture.DB
	log      *slog.Logger
	now      func() time.Time
	m        *Metrics
	client   *http.Client
	health   health
	warns    warnLimiter

	verifier setVerifier
	subjects subjects
	keys     keySet

	configURL    string
	jwksOverride string
	metaMu       sync.Mutex // serializes metadata fetches
	meta         atomic.Pointer[ssfMetadata]

	mu     sync.Mutex // guards stream and the poll state below
	stream StreamStatus
	state  string // outstanding verification state
	poll   string // poll endpoint
	acks   []string
	errs   map[string]*SETError
}

// StreamStatus is the SSF stream as the receiver knows it, for the admin
// API.
type StreamStatus struct {
	StreamID string `json:"stream_id,omitempty"`
	// Status is the transmitter's stream status (enabled, paused,
	// disabled), or "" when unknown.
	Status string `json:"status,omitempty"`
	// Verified is set when the last requested verification event came
	// back with its state.
	Verified         bool      `json:"verified"`
	LastVerification time.Time `json:"last_verification,omitzero"`
	FeedHealth
}

// ssfMetadata is the part of the transmitter configuration metadata the
// receiver uses.
type ssfMetadata struct {
	Issuer                 string   `json:"issuer"`
	JWKSURI                string   `json:"jwks_uri"`
	ConfigurationEndpoint  string   `json:"configuration_endpoint"`
	StatusEndpoint         string   `json:"status_endpoint"`
	VerificationEndpoint   string   `json:"verification_endpoint"`
	DeliveryMethods        []string `json:"delivery_methods_supported"`
	CriticalSubjectMembers []string `json:"critical_subject_members"`
}

// NewSSF builds the SSF receiver described by cfg, reading its secret
// files. It makes no request: keys and metadata are fetched when first
// needed, and stream management runs in Run.
func NewSSF(cfg posture.FeedConfig, db *posture.DB, opts Options) (*SSF, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: %w", cfg.Name, err)
	}
	if cfg.Type != posture.FeedSSF {
		return nil, fmt.Errorf("feeds: feed %q has type %q, not %q", cfg.Name, cfg.Type, posture.FeedSSF)
	}
	if db == nil {
		return nil, errors.New("feeds: no posture store")
	}
	s := &SSF{
		name: cfg.Name, path: cfg.Path, delivery: cfg.Delivery, maxBody: cfg.MaxBody,
		interval: cfg.PollInterval.Std(), manage: cfg.ManageStream, events: cfg.Events,
		endpoint: cfg.EndpointURL, db: db, poll: cfg.PollEndpoint,
		configURL: cfg.ConfigURL, jwksOverride: cfg.JWKSURL,
	}
	if len(s.events) == 0 {
		s.events = SSFEventTypes
	}
	if s.configURL == "" {
		s.configURL = wellKnown(cfg.Issuer)
	}
	var err error
	if s.secrets, err = readAuthSecrets(cfg.AuthorizationSecrets()); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: authorization_file: %w", cfg.Name, err)
	}
	if len(s.secrets) > 0 {
		s.token = conf.NewSecret(s.secrets[0])
	}
	if err := opts.fill(&s.log, &s.now, &s.m, &s.client, cfg.Name); err != nil {
		return nil, err
	}
	s.health.init(s.name, posture.FeedSSF, s.m)
	s.keys = keySet{url: s.jwksURL, client: s.client, now: s.now}
	s.verifier = setVerifier{issuer: cfg.Issuer, audience: cfg.Audience, tolerance: cfg.Tolerance.Std(), keys: &s.keys, now: s.now}
	s.subjects = subjects{userFrom: cfg.UserFrom, issuers: []string{cfg.Issuer}, deviceCA: cfg.DeviceCA}
	return s, nil
}

// wellKnown is the SSF configuration URL of an issuer: the well-known
// path inserted between the host and the issuer's path.
func wellKnown(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	p := strings.TrimRight(u.Path, "/")
	u.Path = "/.well-known/ssf-configuration" + p
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// Name returns the feed's name, the source of the events it stores.
func (s *SSF) Name() string { return s.name }

// Path returns the URL path pushed SETs are accepted at.
func (s *SSF) Path() string { return s.path }

// Health reports the feed's counters.
func (s *SSF) Health() FeedHealth { return s.health.snapshot() }

// Status reports the stream and the feed's counters.
func (s *SSF) Status() StreamStatus {
	s.mu.Lock()
	st := s.stream
	s.mu.Unlock()
	st.FeedHealth = s.health.snapshot()
	return st
}

// KeyFetches returns how many times the transmitter's JWKS was fetched.
func (s *SSF) KeyFetches() int { return s.keys.fetchCount() }

func (s *SSF) critical() []string {
	if m := s.meta.Load(); m != nil {
		return m.CriticalSubjectMembers
	}
	return nil
}

// ServeHTTP accepts one pushed SET (RFC 8935): 202 once it is stored (or
// recognised as a replay, or ignored), 400 with {"err","description"}
// when it is refused, 401 without a matching bearer token, and 503 with
// Retry-After when its key cannot be had yet (see [keySet]), so that the
// transmitter delivers it again rather than losing it.
func (s *SSF) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	arrived := s.now()
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		s.refuse(rw, r, http.StatusMethodNotAllowed, setErr(SETInvalidRequest, "use POST"))
		return
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok || !matchSecret(s.secrets, tok) {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		s.refuse(rw, r, http.StatusUnauthorized, setErr(SETAuthFailed, "missing or wrong bearer token"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/secevent+jwt" {
		s.refuse(rw, r, http.StatusBadRequest, setErr(SETInvalidRequest, "Content-Type must be application/secevent+jwt"))
		return
	}
	body, status, _, detail := readLimited(rw, r, s.maxBody)
	if status != 0 {
		s.refuse(rw, r, status, setErr(SETInvalidRequest, "%s", detail))
		return
	}
	set, serr := s.verifier.verify(r.Context(), string(body), arrived)
	if serr == nil {
		serr = s.control(set)
	}
	if serr != nil {
		status := http.StatusBadRequest
		if serr.RetryAfter > 0 {
			// Not a verdict on the SET: a transmitter retries a 5xx
			// (RFC 8935 leaves a 400 final), and the retry finds the key.
			status = http.StatusServiceUnavailable
		}
		s.refuse(rw, r, status, serr)
		return
	}
	if _, err := s.store(r.Context(), []*SET{set}); err != nil {
		status, _ := storeFailure(err)
		if status == http.StatusServiceUnavailable {
			rw.Header().Set("Retry-After", "5")
		}
		s.refuse(rw, r, status, setErr(SETInvalidRequest, "the event was not stored; retry later"))
		return
	}
	s.m.requests.WithLabelValues(s.name, "202").Inc()
	rw.WriteHeader(http.StatusAccepted)
}

// control handles the SSF verification and stream-updated events of a
// verified SET.
func (s *SSF) control(set *SET) *SETError {
	ev := &set.event
	switch set.eventType {
	case EventVerification:
		s.mu.Lock()
		pending := s.state
		if pending != "" && ev.State != pending {
			s.mu.Unlock()
			return setErr(SETInvalidState, "the verification state does not match the one requested")
		}
		if pending != "" {
			s.state = ""
			s.stream.Verified = true
			s.stream.LastVerification = s.now()
		}
		s.mu.Unlock()
		s.log.Info("ssf verification event received", "jti", set.JTI, "requested", pending != "")
	case EventStreamUpdated:
		s.mu.Lock()
		s.stream.Status = clipN(ev.Status, 32)
		s.mu.Unlock()
		s.log.Warn("ssf stream status changed", "status", clipN(ev.Status, 32), "reason", clipN(ev.Reason, 256))
	}
	return nil
}

// store maps verified SETs to the store and commits them in one
// transaction, returning how many store events were written. Each SET's
// (iss, jti) guards all of its writes (see [posture.Guard]): a SET whose
// jti was seen in the last 7 days changes nothing, whatever its event.
func (s *SSF) store(ctx context.Context, sets []*SET) (int, error) {
	var b posture.Batch
	b.DedupTTL = JTITTL
	type mapped struct {
		set    *SET
		writes ssfWrites
	}
	var todo []mapped
	now := s.now()
	for _, set := range sets {
		if now.Sub(set.IssuedAt) > JTITTL {
			s.ignore("stale", set)
			continue
		}
		w := s.mapSET(set)
		todo = append(todo, mapped{set, w})
		b.Guards = append(b.Guards, set.guard())
		b.Postures = append(b.Postures, w.postures...)
		b.Risks = append(b.Risks, w.risks...)
		b.Revocations = append(b.Revocations, w.revs...)
		b.Clears = append(b.Clears, w.clears...)
	}
	if len(todo) == 0 {
		return 0, nil
	}
	n := len(b.Postures) + len(b.Risks) + len(b.Revocations) + len(b.Clears)
	res, err := s.db.Apply(ctx, &b)
	if err != nil {
		s.log.Error("feed events not stored", "events", n, "err", err)
		s.health.fail("store: "+err.Error(), s.now())
		return 0, err
	}
	for i, m := range todo {
		if res.Guards[i] == posture.Duplicate {
			s.m.events.WithLabelValues(s.name, posture.Duplicate.String()).Inc()
			s.log.Info("ssf SET already received", "jti", m.set.JTI, "event_type", eventName(m.set))
			continue
		}
		for _, reason := range m.writes.ignored {
			s.ignore(reason, m.set)
		}
		if m.writes.n() > 0 {
			s.log.Info("ssf event", "jti", m.set.JTI, "txn", m.set.TxN, "event_type", eventName(m.set), "writes", m.writes.n())
		}
	}
	for _, outs := range [][]posture.Outcome{res.Postures, res.Risks, res.Revocations, res.Clears} {
		for _, o := range outs {
			if o != posture.Duplicate {
				s.m.events.WithLabelValues(s.name, o.String()).Inc()
			}
		}
	}
	s.health.stored(len(todo), s.now())
	return n, nil
}

// guard is the SET's dedup guard: its issuer and jti.
func (set *SET) guard() posture.Guard {
	return posture.Guard{Issuer: set.Issuer, ID: set.JTI}
}

// eventName is the last path segment of the SET's event type.
func eventName(set *SET) string {
	return set.eventType[strings.LastIndexByte(set.eventType, '/')+1:]
}

// ignore counts an event accepted but not acted on. An unknown subject is
// accepted rather than refused: a transmitter that gets errors for
// subjects it may legitimately send (users who never used this gateway)
// retries or disables the stream, and the next events, which matter, are
// lost.
func (s *SSF) ignore(reason string, set *SET) {
	s.health.ignore(1)
	s.m.ignored.WithLabelValues(s.name, reason).Inc()
	s.log.Info("ssf event ignored", "reason", reason, "jti", set.JTI, "event_type", eventName(set))
}

// refuse answers with an RFC 8935 error body, counts and logs it.
func (s *SSF) refuse(rw http.ResponseWriter, r *http.Request, status int, e *SETError) {
	s.health.reject()
	s.health.fail(e.Code+": "+e.Description, s.now())
	s.m.requests.WithLabelValues(s.name, strconv.Itoa(status)).Inc()
	s.m.rejections.WithLabelValues(s.name, "ssf."+e.Code).Inc()
	s.warns.warn(s.log, s.now(), "ssf SET refused", "reason", e.Code, "description", e.Description, "status", status, "remote_addr", r.RemoteAddr)
	b, _ := json.Marshal(e)
	if e.RetryAfter > 0 {
		rw.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	rw.Write(b)
}

// retryAfter formats d as a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

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
	"time"

	"portcullis/internal/conf"
	"portcullis/posture"
)

// Okta System Log event types the feed acts on.
var (
	oktaRiskTypes = []string{"user.risk.detect", "user.risk.change"}
	// oktaRevokeTypes revoke every session of the user issued before the
	// event.
	oktaRevokeTypes = []string{
		"user.session.end", "user.session.clear", "user.authentication.universal_logout",
		"user.lifecycle.deactivate", "user.lifecycle.suspend", "user.lifecycle.delete.initiated",
		"user.account.lock", "user.account.reset_password",
		"user.mfa.factor.reset_all", "user.mfa.factor.deactivate",
	}
	// oktaPolicyTypes revoke when their action is TERMINATE_SESSION.
	oktaPolicyTypes = []string{"policy.entity_risk.action", "policy.continuous_access.action"}
)

// OktaEventTypes are the System Log event types the feed acts on: the
// ones to subscribe the event hook to, and the System Log poll's filter.
func OktaEventTypes() []string {
	var out []string
	out = append(out, oktaRiskTypes...)
	out = append(out, oktaRevokeTypes...)
	return append(out, oktaPolicyTypes...)
}

// maxChallenge is the longest verification challenge answered.
const maxChallenge = 256

// OktaHook is the Okta event hook feed: it answers Okta's one-time
// verification, accepts deliveries that carry the configured secret
// header, maps user risk and session, lifecycle and lock events to the
// store, and replies 200 once they are durable. Its Run polls the System
// Log to fill the gaps hooks leave (Okta retries a delivery at most once).
// Safe for concurrent use.
type OktaHook struct {
	name     string
	path     string
	header   string
	secrets  [][]byte
	maxBody  int64
	userFrom posture.UserFrom
	db       *posture.DB
	log      *slog.Logger
	now      func() time.Time
	m        *Metrics
	health   health
	warns    warnLimiter

	// System Log polling; org is nil when it is off.
	org      *url.URL
	token    conf.Secret
	interval time.Duration
	client   *http.Client
}

// NewOktaHook builds the Okta event hook feed described by cfg, reading
// its secret files.
func NewOktaHook(cfg posture.FeedConfig, db *posture.DB, opts Options) (*OktaHook, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: %w", cfg.Name, err)
	}
	if cfg.Type != posture.FeedOktaHook {
		return nil, fmt.Errorf("feeds: feed %q has type %q, not %q", cfg.Name, cfg.Type, posture.FeedOktaHook)
	}
	if db == nil {
		return nil, errors.New("feeds: no posture store")
	}
	secrets, err := readAuthSecrets(cfg.AuthorizationSecrets())
	if err != nil {
		return nil, fmt.Errorf("feeds: feed %q: authorization_file: %w", cfg.Name, err)
	}
	o := &OktaHook{
		name: cfg.Name, path: cfg.Path, header: cfg.Header, secrets: secrets,
		maxBody: cfg.MaxBody, userFrom: cfg.UserFrom, db: db,
		interval: cfg.PollInterval.Std(), client: opts.HTTPClient,
	}
	if cfg.OktaOrg != "" {
		if o.org, err = url.Parse(strings.TrimRight(cfg.OktaOrg, "/")); err != nil {
			return nil, fmt.Errorf("feeds: feed %q: okta_org: %w", cfg.Name, err)
		}
		if o.token, err = conf.ReadSecretFile(cfg.APITokenFile); err != nil {
			return nil, fmt.Errorf("feeds: feed %q: api_token_file: %w", cfg.Name, err)
		}
	}
	if err := opts.fill(&o.log, &o.now, &o.m, &o.client, cfg.Name); err != nil {
		return nil, err
	}
	o.health.init(o.name, posture.FeedOktaHook, o.m)
	return o, nil
}

// Name returns the feed's name, the source of the events it stores.
func (o *OktaHook) Name() string { return o.name }

// Path returns the URL path the feed is served at.
func (o *OktaHook) Path() string { return o.path }

// Health reports the feed's counters.
func (o *OktaHook) Health() FeedHealth { return o.health.snapshot() }

// ServeHTTP answers the verification GET and accepts POSTed deliveries.
func (o *OktaHook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		o.verify(rw, r)
	case http.MethodPost:
		o.deliver(rw, r)
	default:
		rw.Header().Set("Allow", "GET, POST")
		o.reject(rw, r, http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "use GET (verification) or POST")
	}
}

func (o *OktaHook) authorized(r *http.Request) bool {
	return matchSecret(o.secrets, r.Header.Get(o.header))
}

// verify answers Okta's one-time verification request, only when the
// secret header matches too.
func (o *OktaHook) verify(rw http.ResponseWriter, r *http.Request) {
	if !o.authorized(r) {
		o.reject(rw, r, http.StatusUnauthorized, ReasonBadAuthorization, "the "+o.header+" header does not match the feed's secret")
		return
	}
	ch := r.Header.Get("X-Okta-Verification-Challenge")
	switch {
	case ch == "":
		o.reject(rw, r, http.StatusBadRequest, ReasonBadChallenge, "GET is only for Okta's verification: X-Okta-Verification-Challenge is missing")
		return
	case len(ch) > maxChallenge:
		o.reject(rw, r, http.StatusBadRequest, ReasonBadChallenge, fmt.Sprintf("the challenge is longer than %d bytes", maxChallenge))
		return
	}
	b, _ := json.Marshal(struct {
		Verification string `json:"verification"`
	}{ch})
	o.log.Info("okta event hook verified", "remote_addr", r.RemoteAddr)
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
	rw.Write(b)
}

func (o *OktaHook) deliver(rw http.ResponseWriter, r *http.Request) {
	if !o.authorized(r) {
		o.reject(rw, r, http.StatusUnauthorized, ReasonBadAuthorization, "the "+o.header+" header does not match the feed's secret")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		o.reject(rw, r, http.StatusUnsupportedMediaType, ReasonUnsupportedMedia, "Content-Type must be application/json")
		return
	}
	body, status, reason, detail := readLimited(rw, r, o.maxBody)
	if reason != "" {
		o.reject(rw, r, status, reason, detail)
		return
	}
	d, err := ParseOktaHook(body)
	if err != nil {
		o.reject(rw, r, http.StatusBadRequest, ReasonInvalidPayload, err.Error())
		return
	}
	if _, err := o.store(r.Context(), d.Events, nil); err != nil {
		status, reason := storeFailure(err)
		o.reject(rw, r, status, reason, "the events were not stored; retry later")
		return
	}
	o.m.requests.WithLabelValues(o.name, "200").Inc()
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
}

// oktaAction is what one System Log event does to the store.
type oktaAction struct {
	ev     *OktaEvent
	user   string
	risk   *posture.RiskEvent
	revoke *posture.RevocationEvent
}

// store maps raw System Log events to the store and commits them with
// cursor, in one transaction. Malformed and unknown events are logged,
// counted and skipped.
func (o *OktaHook) store(ctx context.Context, raw []json.RawMessage, cursor *posture.Cursor) (int, error) {
	var b posture.Batch
	var acts []oktaAction
	for i, e := range raw {
		ev, err := ParseOktaEvent(e)
		if err != nil {
			o.ignore("malformed_event", "index", i, "err", err)
			continue
		}
		a, reason := o.mapEvent(ev)
		if reason != "" {
			o.ignore(reason, "uuid", ev.UUID, "event_type", ev.EventType, "trace_id", ev.debugString("traceId"))
			continue
		}
		if a.risk != nil {
			b.Risks = append(b.Risks, *a.risk)
		}
		if a.revoke != nil {
			b.Revocations = append(b.Revocations, *a.revoke)
		}
		acts = append(acts, a)
	}
	b.Cursor = cursor
	if len(acts) == 0 && cursor == nil {
		return 0, nil
	}
	res, err := o.db.Apply(ctx, &b)
	if err != nil {
		o.log.Error("feed events not stored", "events", len(acts), "err", err)
		o.health.fail("store: "+err.Error(), o.now())
		return 0, err
	}
	ri, vi := 0, 0
	for _, a := range acts {
		var out posture.Outcome
		action := ""
		if a.risk != nil {
			out, action = res.Risks[ri], "risk="+a.risk.Risk.Level.String()
			ri++
		} else {
			out, action = res.Revocations[vi], "revoke_user"
			vi++
		}
		o.m.events.WithLabelValues(o.name, out.String()).Inc()
		o.log.Info("okta event", "uuid", a.ev.UUID, "event_type", a.ev.EventType, "trace_id", a.ev.debugString("traceId"),
			"user_id", a.user, "action", action, "result", out.String())
	}
	o.health.stored(len(acts), o.now())
	return len(acts), nil
}

// mapEvent turns one System Log event into a store event, or names the
// reason it is ignored.
func (o *OktaHook) mapEvent(ev *OktaEvent) (oktaAction, string) {
	u := ev.user()
	if u == nil {
		return oktaAction{}, "unknown_subject"
	}
	user := u.AlternateID
	if o.userFrom == posture.UserFromSub {
		user = u.ID
	}
	user = strings.ToLower(strings.TrimSpace(user))
	if user == "" {
		return oktaAction{}, "unknown_subject"
	}
	a := oktaAction{ev: ev, user: user}
	switch {
	case contains(oktaRiskTypes, ev.EventType):
		raw := ev.debugString("risk")
		pr := ParseOktaRisk(raw)
		level, ok := posture.ParseRiskLevel(strings.ToLower(pr.Level))
		if !ok || level == posture.RiskUnknown {
			return oktaAction{}, "unknown_level"
		}
		var reasons []string
		if pr.DetectionName != "" {
			reasons = append(reasons, pr.DetectionName)
		}
		reasons = append(reasons, clipN(raw, 512))
		a.risk = &posture.RiskEvent{Risk: posture.UserRisk{
			User: user, Level: level, Reasons: reasons, Source: o.name, EventID: ev.UUID, ObservedAt: ev.Published,
		}}
	case contains(oktaRevokeTypes, ev.EventType),
		contains(oktaPolicyTypes, ev.EventType) && ev.hasDetailValue("TERMINATE_SESSION"):
		if ev.Outcome.Result != "" && ev.Outcome.Result != "SUCCESS" && ev.Outcome.Result != "ALLOW" {
			return oktaAction{}, "unsuccessful_event"
		}
		a.revoke = &posture.RevocationEvent{Revocation: posture.Revocation{
			Kind: posture.RevokeUser, User: user, Before: revocationCutoff(ev.Published), Reasons: []string{ev.EventType},
			Source: o.name, EventID: ev.UUID, ObservedAt: ev.Published,
		}}
	default:
		return oktaAction{}, "unknown_event"
	}
	return a, ""
}

func (o *OktaHook) ignore(reason string, args ...any) {
	o.health.ignore(1)
	o.m.ignored.WithLabelValues(o.name, reason).Inc()
	o.log.Info("okta event ignored", append([]any{"reason", reason}, args...)...)
}

// reject answers a refused request with a problem document, counts it and
// logs one line without the body or a secret.
func (o *OktaHook) reject(rw http.ResponseWriter, r *http.Request, status int, reason, detail string) {
	o.health.reject()
	o.health.fail(reason, o.now())
	o.m.requests.WithLabelValues(o.name, strconv.Itoa(status)).Inc()
	o.m.rejections.WithLabelValues(o.name, reason).Inc()
	o.warns.warn(o.log, o.now(), "feed request refused", "reason", reason, "status", status, "remote_addr", r.RemoteAddr)
	writeProblem(rw, status, reason, detail)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

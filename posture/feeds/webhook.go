package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
	"portcullis/posture"
)

// Options are what a feed needs besides its configuration.
type Options struct {
	// Logger receives one line per refused request; nil discards. The
	// feed adds the key "feed" (its name) to every line: the logger must
	// not carry it already, or lines would hold the key twice.
	Logger *slog.Logger
	// Metrics, when set, are shared with other feeds; otherwise metrics
	// are created on Registry (which may be nil: not registered).
	Metrics  *Metrics
	Registry prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient makes the outgoing requests of polling feeds and key
	// fetches; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// fill sets a feed's logger, clock, metrics and client from opts, with
// defaults.
func (opts Options) fill(log **slog.Logger, now *func() time.Time, m **Metrics, client **http.Client, name string) error {
	*log = opts.Logger
	if *log == nil {
		*log = slog.New(slog.DiscardHandler)
	}
	*log = (*log).With("feed", name)
	*now = opts.Now
	if *now == nil {
		*now = time.Now
	}
	*m = opts.Metrics
	if *m == nil {
		mm, err := NewMetrics(opts.Registry)
		if err != nil {
			return fmt.Errorf("feeds: registering metrics: %w", err)
		}
		*m = mm
	}
	*client = opts.HTTPClient
	if *client == nil {
		*client = &http.Client{Timeout: 30 * time.Second}
	}
	return nil
}

// Webhook is the signed generic webhook feed: it accepts
// portcullis.posture.v1 events signed with Standard Webhooks and writes
// them to the posture store. It is an [http.Handler], safe for concurrent
// use, meant to be mounted at [Webhook.Path].
type Webhook struct {
	name      string
	path      string
	ca        string
	keys      [][]byte
	maxBody   int64
	tolerance time.Duration
	db        *posture.DB
	log       *slog.Logger
	now       func() time.Time
	m         *Metrics
	health    health
	warns     warnLimiter
}

// NewWebhook builds the feed described by cfg, reading its secret files.
// cfg.DeviceCA must be set (the caller fills the default).
func NewWebhook(cfg posture.FeedConfig, db *posture.DB, opts Options) (*Webhook, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("feeds: feed %q: %w", cfg.Name, err)
	}
	if cfg.Type != posture.FeedWebhook {
		return nil, fmt.Errorf("feeds: feed %q has type %q, not %q", cfg.Name, cfg.Type, posture.FeedWebhook)
	}
	if cfg.DeviceCA == "" {
		return nil, fmt.Errorf("feeds: feed %q: device_ca is required", cfg.Name)
	}
	if db == nil {
		return nil, errors.New("feeds: no posture store")
	}
	w := &Webhook{
		name:      cfg.Name,
		path:      cfg.Path,
		ca:        cfg.DeviceCA,
		maxBody:   cfg.MaxBody,
		tolerance: cfg.Tolerance.Std(),
		db:        db,
		log:       opts.Logger,
		now:       opts.Now,
		m:         opts.Metrics,
	}
	for _, file := range cfg.Secrets() {
		s, err := conf.ReadSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("feeds: feed %q: reading secret: %w", cfg.Name, err)
		}
		key, err := conf.DecodeWebhookSecret(s)
		if err != nil {
			return nil, fmt.Errorf("feeds: feed %q: secret file %s: %w", cfg.Name, file, err)
		}
		w.keys = append(w.keys, key)
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("feed", w.name)
	if w.now == nil {
		w.now = time.Now
	}
	if w.m == nil {
		m, err := NewMetrics(opts.Registry)
		if err != nil {
			return nil, fmt.Errorf("feeds: registering metrics: %w", err)
		}
		w.m = m
	}
	w.health.init(w.name, posture.FeedWebhook, w.m)
	return w, nil
}

// Run waits for ctx to end: the webhook feed has no background work. It
// makes Webhook a [Receiver].
func (w *Webhook) Run(ctx context.Context) error { return waitDone(ctx) }

// Health reports the feed's counters.
func (w *Webhook) Health() FeedHealth { return w.health.snapshot() }

// Name returns the feed's name, which is the source its events carry.
func (w *Webhook) Name() string { return w.name }

// Path returns the URL path the feed is served at.
func (w *Webhook) Path() string { return w.path }

// reply is the body of a 200 reply: how many events had each outcome.
type reply struct {
	Applied    int `json:"applied"`
	Duplicate  int `json:"duplicate"`
	OutOfOrder int `json:"out_of_order"`
}

// ServeHTTP checks a delivery in the order of device-feeds.md §2.1 and §3
// (method, media type, size, headers, timestamp, signature, payload,
// id, source), stores its events and replies 200 with their outcomes
// once they are durable.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		w.reject(rw, r, http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "use POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		w.reject(rw, r, http.StatusUnsupportedMediaType, ReasonUnsupportedMedia, "Content-Type must be application/json")
		return
	}
	body, status, reason, detail := w.readBody(rw, r)
	if reason != "" {
		w.reject(rw, r, status, reason, detail)
		return
	}

	id, ts, sig := r.Header.Get(HeaderID), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	if id == "" || ts == "" || sig == "" {
		w.reject(rw, r, http.StatusUnauthorized, ReasonMissingHeaders, "webhook-id, webhook-timestamp and webhook-signature are required")
		return
	}
	now := w.now()
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		w.reject(rw, r, http.StatusUnauthorized, ReasonStaleTimestamp, "webhook-timestamp must be decimal Unix seconds")
		return
	}
	if skew := now.Sub(time.Unix(sec, 0)).Abs(); skew > w.tolerance {
		w.reject(rw, r, http.StatusUnauthorized, ReasonStaleTimestamp, fmt.Sprintf("webhook-timestamp is more than %s from the gateway's clock", w.tolerance))
		return
	}
	if !verifySignature(w.keys, id, ts, sig, body) {
		w.reject(rw, r, http.StatusUnauthorized, ReasonBadSignature, "no v1 signature matches a key of this feed")
		return
	}

	events, batch, err := parsePostureEvents(body, now)
	if err != nil {
		var pe *PayloadError
		if !errors.As(err, &pe) {
			pe = &PayloadError{Reason: ReasonInvalidPayload, Detail: err.Error()}
		}
		w.reject(rw, r, http.StatusBadRequest, pe.Reason, pe.Detail)
		return
	}
	if !batch && events[0].Posture.EventID != id {
		w.reject(rw, r, http.StatusBadRequest, ReasonIDMismatch, "event_id must equal the webhook-id header")
		return
	}
	for i := range events {
		if events[i].Posture.Source != w.name {
			w.reject(rw, r, http.StatusBadRequest, ReasonSourceMismatch,
				fmt.Sprintf("event %d: source %q is not this feed (%q)", i, clip(events[i].Posture.Source), w.name))
			return
		}
		events[i].Key.CA = w.ca
	}

	outcomes, err := w.db.ApplyPosture(r.Context(), events)
	if err != nil {
		status, reason := storeFailure(err)
		w.count(status, reason)
		w.log.Error("feed events not stored", "reason", reason, "status", status, "remote_addr", r.RemoteAddr, "events", len(events), "err", err)
		writeProblem(rw, status, reason, "the events were not stored; retry later")
		return
	}
	var rep reply
	for _, o := range outcomes {
		switch o {
		case posture.Applied:
			rep.Applied++
		case posture.Duplicate:
			rep.Duplicate++
		case posture.OutOfOrder:
			rep.OutOfOrder++
		}
	}
	w.countEvents(rep)
	w.health.stored(len(outcomes), w.now())
	w.m.requests.WithLabelValues(w.name, "200").Inc()
	b, _ := json.Marshal(rep)
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
	rw.Write(append(b, '\n'))
}

// readBody reads at most maxBody bytes; a longer body is refused with 413
// before more of it is read.
func (w *Webhook) readBody(rw http.ResponseWriter, r *http.Request) (body []byte, status int, reason, detail string) {
	return readLimited(rw, r, w.maxBody)
}

func (w *Webhook) countEvents(rep reply) {
	for _, c := range []struct {
		result string
		n      int
	}{{"applied", rep.Applied}, {"duplicate", rep.Duplicate}, {"out_of_order", rep.OutOfOrder}} {
		if c.n > 0 {
			w.m.events.WithLabelValues(w.name, c.result).Add(float64(c.n))
		}
	}
}

// reject answers a refused request with a problem document, counts it and
// logs one line. The line never holds the body or a secret.
func (w *Webhook) reject(rw http.ResponseWriter, r *http.Request, status int, reason, detail string) {
	w.count(status, reason)
	w.warns.warn(w.log, w.now(), "feed request refused", "reason", reason, "status", status, "remote_addr", r.RemoteAddr)
	writeProblem(rw, status, reason, detail)
}

func (w *Webhook) count(status int, reason string) {
	w.health.reject()
	w.health.fail(reason, w.now())
	w.m.requests.WithLabelValues(w.name, strconv.Itoa(status)).Inc()
	w.m.rejections.WithLabelValues(w.name, reason).Inc()
}

// readLimited reads at most max bytes of the body; a longer body is
// refused with 413 before more of it is read.
func readLimited(rw http.ResponseWriter, r *http.Request, max int64) (body []byte, status int, reason, detail string) {
	tooLarge := fmt.Sprintf("the body must be at most %d bytes", max)
	if r.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge, ReasonTooLarge, tooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(rw, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, ReasonTooLarge, tooLarge
	case err != nil && !errors.Is(err, io.EOF):
		return nil, http.StatusBadRequest, ReasonReadFailed, "the body could not be read"
	}
	return buf.Bytes(), 0, "", ""
}

// storeFailure maps a store error to a status and reason.
func storeFailure(err error) (int, string) {
	if errors.Is(err, posture.ErrClosed) || errors.Is(err, posture.ErrUnavailable) {
		return http.StatusServiceUnavailable, ReasonStoreUnavailable
	}
	return http.StatusInternalServerError, ReasonStoreFailed
}

package saml

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	crewsaml "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/deny"
	"portcullis/posture"
)

// Revoker stores session and user revocations; *posture.DB is one.
type Revoker interface {
	Revoke(ctx context.Context, r posture.Revocation) (posture.Outcome, error)
}

// Options are what an [SP] needs beyond its configuration.
type Options struct {
	// StateDir receives the generated SP key pair when the configuration
	// names none.
	StateDir string
	// Sessions seals the session cookies; one codec per SP, named
	// [CookieName] (see NewCodec in package session).
	Sessions *session.Codec
	// Replay is the process-wide replay cache: [OpenReplayCache], or the
	// store the replicas share.
	Replay Replay
	// Tracker holds logins in progress ([NewTracker]); share it across
	// reloads.
	Tracker *Tracker
	// Revoker receives the revocations of IdP-initiated logouts; nil
	// disables them (the LogoutRequest is refused).
	Revoker Revoker
	// Hosts are the hosts of the resources that log in with this IdP
	// (patterns, see flow.HostList): a login may return to one of them,
	// or to the RootURL host.
	Hosts []string
	// Ports reports whether the gateway serves a port; a return URL may
	// name only those (and the RootURL's). Nil: none but the default.
	Ports func(port int) bool
	// Handoffs carries logins to the host they started on; it is served
	// at flow.HandoffPath by whoever mounts the endpoints. Nil: a new
	// table.
	Handoffs *flow.Handoffs
	// HTTPClient fetches the IdP metadata; nil: a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Metrics    *Metrics // nil: none
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// CookieName returns the session cookie name of the SP called name.
func CookieName(name string) string { return session.CookiePrefix + "-saml-" + name }

// SP is a SAML service provider for one IdP. It is safe for concurrent
// use.
type SP struct {
	cfg        Config
	idp        string // "saml:NAME"
	lib        crewsaml.ServiceProvider
	key        *rsa.PrivateKey
	cert       *x509.Certificate
	root       *url.URL
	acsURL     string
	sloURL     string
	loginURL   string
	meta       metadataSource
	lastTry    atomic.Int64 // unix nanos of the last metadata fetch attempt
	codec      *session.Codec
	replay     Replay
	tracker    *Tracker
	revoker    Revoker
	returns    *flow.Returns
	handoffs   *flow.Handoffs
	log        *slog.Logger
	metrics    *Metrics
	now        func() time.Time
	sessionIdx *sessionIndex
}

// New builds the SP for cfg. It reads the IdP metadata file, or tries a
// first fetch of the metadata URL (bounded by ctx and a 10 s timeout); a
// failed fetch is logged and retried on use, so an IdP that is down at
// start-up does not stop the gateway.
func New(ctx context.Context, cfg Config, opts Options) (*SP, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Sessions == nil || opts.Replay == nil || opts.Tracker == nil {
		return nil, errors.New("saml: Sessions, Replay and Tracker are required")
	}
	sp := &SP{cfg: cfg, idp: "saml:" + cfg.Name, codec: opts.Sessions, replay: opts.Replay, tracker: opts.Tracker,
		revoker: opts.Revoker, handoffs: opts.Handoffs, log: opts.Logger, metrics: opts.Metrics, now: opts.Now,
		sessionIdx: newSessionIndex()}
	if sp.log == nil {
		sp.log = slog.New(slog.DiscardHandler)
	}
	sp.log = sp.log.With("idp", sp.idp)
	if sp.now == nil {
		sp.now = time.Now
	}
	if sp.handoffs == nil {
		sp.handoffs = flow.NewHandoffs(sp.now)
	}
	var err error
	if sp.key, sp.cert, err = loadKeyPair(cfg.KeyFile.String(), cfg.CertFile.String(), opts.StateDir, cfg.Name); err != nil {
		return nil, err
	}
	sp.root, _ = url.Parse(strings.TrimRight(cfg.RootURL, "/"))
	sp.returns = flow.NewReturns(append([]string{sp.root.Host}, opts.Hosts...), opts.Ports, sp.root.Scheme == "http")
	sp.acsURL = cfg.endpoint("acs")
	sp.sloURL = cfg.endpoint("slo")
	sp.loginURL = cfg.endpoint("login")
	metaURL, _ := url.Parse(cfg.endpoint("metadata"))
	acs, _ := url.Parse(sp.acsURL)
	slo, _ := url.Parse(sp.sloURL)
	sp.lib = crewsaml.ServiceProvider{
		EntityID:        cfg.EntityID,
		Key:             sp.key,
		Certificate:     sp.cert,
		MetadataURL:     *metaURL,
		AcsURL:          *acs,
		SloURL:          *slo,
		SignatureMethod: dsig.RSASHA256SignatureMethod,
		// InResponseTo is checked here, against requests this browser
		// started; the library's check is skipped (see verify).
		AllowIDPInitiated:     true,
		ValidateRequestID:     func(crewsaml.Response, []string) error { return nil },
		LogoutBindings:        []string{crewsaml.HTTPRedirectBinding},
		MetadataValidDuration: 48 * time.Hour,
	}
	sp.lib.ValidateAudienceRestriction = sp.checkAudience

	sp.meta.url, sp.meta.refresh = cfg.IdPMetadataURL, cfg.MetadataRefresh.Std()
	sp.meta.client = opts.HTTPClient
	if sp.meta.client == nil {
		sp.meta.client = &http.Client{Timeout: metadataTimeout}
	}
	if cfg.IdPMetadataFile != "" {
		m, err := readMetadataFile(cfg.IdPMetadataFile.String())
		if err != nil {
			return nil, fmt.Errorf("idp_metadata_file: %w", err)
		}
		m.fetched = sp.now()
		sp.meta.cur.Store(m)
	} else {
		sp.lastTry.Store(sp.now().UnixNano())
		if err := sp.meta.fetch(ctx, sp.now()); err != nil {
			sp.log.Warn("saml metadata fetch failed; retrying on use", "error", err)
		}
	}
	return sp, nil
}

// Name returns the provider's login name, "saml:NAME".
func (sp *SP) Name() string { return sp.idp }

// metadata returns the current IdP metadata, starting a background
// refresh when it is due (at most one every 30 s), or nil when none was
// ever loaded.
func (sp *SP) metadata() *idpMeta {
	now := sp.now()
	if sp.meta.stale(now) && now.UnixNano()-sp.lastTry.Load() >= int64(30*time.Second) && sp.meta.running.CompareAndSwap(false, true) {
		sp.lastTry.Store(now.UnixNano())
		go func() {
			defer sp.meta.running.Store(false)
			if err := sp.meta.fetch(context.Background(), sp.now()); err != nil {
				sp.log.Warn("saml metadata refresh failed; keeping the last good copy", "error", err)
			}
		}()
	}
	return sp.meta.cur.Load()
}

// Refresh fetches the IdP metadata now (metadata URL only).
func (sp *SP) Refresh(ctx context.Context) error {
	if sp.meta.url == "" {
		return nil
	}
	sp.lastTry.Store(sp.now().UnixNano())
	return sp.meta.fetch(ctx, sp.now())
}

// Handlers returns the SP's endpoints by exact path, for the gateway's
// table of system paths. The handoff endpoint is not among them: it is
// shared with OIDC (flow.HandoffPath).
func (sp *SP) Handlers() map[string]http.Handler {
	p := PathPrefix + sp.cfg.Name + "/"
	return map[string]http.Handler{
		p + "metadata": http.HandlerFunc(sp.serveMetadata),
		p + "login":    http.HandlerFunc(sp.serveLogin),
		p + "acs":      http.HandlerFunc(sp.serveACS),
		p + "logout":   flow.Logout(http.HandlerFunc(sp.serveLogout)), // as the OIDC logout: a same-origin POST
		p + "slo":      http.HandlerFunc(sp.serveSLO),
	}
}

// Authenticate returns the subject of r's session cookie for this SP, or
// nil. It removes the gateway's cookies from r so they never reach the
// upstream. When w is not nil and the session is due, its cookie is
// re-issued to push back the idle deadline.
func (sp *SP) Authenticate(w http.ResponseWriter, r *http.Request) *enforcement.Subject {
	v, ok := session.CookieValue(r.Header, sp.codec.Name())
	session.StripCookies(r.Header, session.CookiePrefix)
	if !ok {
		return nil
	}
	now := sp.now()
	s, err := sp.codec.Open(v, now)
	if err != nil || s.Subject.IdP != sp.idp {
		return nil
	}
	if w != nil && sp.codec.NeedsRefresh(s, now) {
		s.Refreshed = now
		if err := sp.codec.Write(w, s); err != nil {
			sp.log.Warn("saml session refresh failed", "error", err)
		}
	}
	sub := s.Subject
	return &sub
}

// Challenge answers a request that needs a (stronger) login: a browser
// is sent to the SP's login endpoint with the URL to come back to; an API
// client gets a 401 problem document naming the login URL. Of c, only
// ACR, RequestID and Resource matter: SAML has no max_age.
func (sp *SP) Challenge(w http.ResponseWriter, r *http.Request, d enforcement.Decision, c flow.Challenge) {
	acr, requestID, resource := c.ACR, c.RequestID, c.Resource
	ret := "https://" + r.Host + r.URL.RequestURI()
	q := url.Values{"return_to": {ret}}
	if d.Verdict == enforcement.StepUp {
		q.Set("force", "1")
		if d.Reason == enforcement.ReasonMFARequired && len(acr) > 0 {
			// crewjam/saml's RequestedAuthnContext carries one class: ask
			// for the resource's first accepted one. The assertion's
			// AuthnContextClassRef is still checked against all of them.
			q.Set("acr", acr[0])
		}
	}
	login := sp.loginURL + "?" + q.Encode()
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !deny.PrefersJSON(r.Header["Accept"]) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, login, http.StatusFound)
		return
	}
	deny.Write(w, r, deny.Info{Status: http.StatusUnauthorized, Reason: string(d.Reason), Detail: d.Reason.Message(),
		RequestID: requestID, Resource: resource, LoginURL: login})
}

// serveMetadata publishes the SP's metadata for the IdP to import.
func (sp *SP) serveMetadata(w http.ResponseWriter, r *http.Request) {
	lib := sp.lib
	if m := sp.metadata(); m != nil {
		lib.IDPMetadata = m.desc
	} else {
		lib.IDPMetadata = &crewsaml.EntityDescriptor{}
	}
	md := lib.Metadata()
	buf, err := xmlMarshal(md)
	if err != nil {
		sp.fail(w, r, &Error{Reason: ReasonInternal, Err: err}, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(buf)
}

// serveLogin starts an SP-initiated login: it checks return_to, binds
// the request to this browser, and redirects to the IdP with a signed
// AuthnRequest.
func (sp *SP) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		sp.fail(w, r, reject(ReasonMalformed, "login with method %s", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if !strings.EqualFold(r.Host, sp.root.Host) {
		// The binding cookie must be set on the host the ACS is on.
		http.Redirect(w, r, sp.loginURL+"?"+r.URL.RawQuery, http.StatusFound)
		return
	}
	ret, err := sp.checkReturn(r.URL.Query().Get("return_to"))
	if err != nil {
		sp.fail(w, r, &Error{Reason: ReasonBadReturn, Err: err}, http.StatusBadRequest)
		return
	}
	m := sp.metadata()
	if m == nil {
		sp.fail(w, r, reject(ReasonIdPUnavailable, "no IdP metadata"), http.StatusServiceUnavailable)
		return
	}
	lib := sp.lib
	lib.IDPMetadata = m.desc
	if r.URL.Query().Get("force") == "1" {
		t := true
		lib.ForceAuthn = &t
	}
	if acr := r.URL.Query().Get("acr"); acr != "" {
		if !validClassRef(acr) {
			sp.fail(w, r, reject(ReasonMalformed, "acr refused"), http.StatusBadRequest)
			return
		}
		lib.RequestedAuthnContext = &crewsaml.RequestedAuthnContext{Comparison: "exact", AuthnContextClassRef: acr}
	}
	req, err := lib.MakeAuthenticationRequest(m.ssoURL, crewsaml.HTTPRedirectBinding, crewsaml.HTTPPostBinding)
	if err != nil {
		sp.fail(w, r, &Error{Reason: ReasonInternal, Err: err}, http.StatusInternalServerError)
		return
	}
	u, err := req.Redirect("", &lib)
	if err != nil {
		sp.fail(w, r, &Error{Reason: ReasonInternal, Err: err}, http.StatusInternalServerError)
		return
	}
	binding := bindingValue(w, r)
	now := sp.now()
	sp.tracker.addRequest(req.ID, pending{idp: sp.cfg.Name, binding: sha(binding), returnTo: ret.String(), expires: now.Add(RequestTTL)}, now)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// fail answers a refused request with a deny page, logs it with its
// reason code, and counts it.
func (sp *SP) fail(w http.ResponseWriter, r *http.Request, e *Error, status int) {
	sp.log.Warn("saml request refused", "reason", string(e.Reason), "path", r.URL.Path, "error", e.Err)
	sp.metrics.rejected(sp.idp, e.Reason)
	deny.Write(w, r, deny.Info{Status: status, Reason: string(e.Reason), Detail: e.Reason.message(),
		RequestID: r.Header.Get("X-Request-Id")})
}

// checkReturn applies the return-URL rule (see flow.Returns): a path
// on the root host, or an absolute URL on the root host or a resource
// host of this IdP. Empty is the root.
func (sp *SP) checkReturn(raw string) (*flow.Target, error) {
	if raw == "" {
		raw = "/"
	}
	return sp.returns.Check(raw, sp.root)
}

// validClassRef bounds an authentication context class reference taken
// from the login URL: a URI or a short name, printable ASCII only.
func validClassRef(s string) bool {
	if len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"portcullis/gateway/audit"
	"portcullis/internal/conf"
	"portcullis/posture"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// csp is the Content-Security-Policy of every console response: nothing
// but the console's own script, styles and requests, no framing, and forms
// that post only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options are what a [Console] reads and acts through.
type Options struct {
	Config  Config
	Store   Store
	Gateway Gateway
	Log     Log
	// Token is the admin token operators may sign in with; zero turns
	// token sign-in off.
	Token conf.Secret
	// SessionKeys seal the session cookies (admin.console.session_key_file):
	// the first seals, every one opens. None: a key made at start.
	SessionKeys [][]byte
	// HostLogout is where signing out on the console host sends the
	// browser: the gateway's logout for the console's login provider.
	HostLogout string
	// PostureMaxAge is posture.max_age: older posture is shown as stale.
	PostureMaxAge time.Duration
	Logger        *slog.Logger
	// Now returns the current time; by default time.Now.
	Now func() time.Time
}

// Console serves the admin console. Create it with [New], serve
// [Console.Handler], and run [Console.Run] to receive decisions. It is
// safe for concurrent use.
type Console struct {
	cfg    Config
	store  Store
	gw     Gateway
	log    Log
	token  conf.Secret
	logger *slog.Logger
	now    func() time.Time
	maxAge time.Duration
	seal   *sealer
	hub    *hub
	tmpl   map[string]*template.Template
	mux    *http.ServeMux
	host   http.Handler // mux, for the console host

	hostLogout string

	countsMu sync.Mutex // guards countsAt and counts
	countsAt time.Time
	counts   [2]int // devices, devices with a problem
}

// New returns a console over opts. It starts nothing.
func New(opts Options) (*Console, error) {
	c := &Console{cfg: opts.Config, store: opts.Store, gw: opts.Gateway, log: opts.Log, token: opts.Token,
		logger: opts.Logger, now: opts.Now, maxAge: opts.PostureMaxAge, hub: newHub(), hostLogout: opts.HostLogout}
	if c.hostLogout == "" {
		c.hostLogout = "/console/"
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	var err error
	if c.seal, err = newSealer(opts.SessionKeys); err != nil {
		return nil, err
	}
	if c.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Run receives decision records from the log until ctx ends, for the
// decisions page, its live stream and the overview's charts.
func (c *Console) Run(ctx context.Context) error {
	ch, stop := c.log.Subscribe(8192)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case rec := <-ch:
			c.hub.add(rec, c.now())
		}
	}
}

// Handler serves the console under /console/.
func (c *Console) Handler() http.Handler { return c.mux }

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(static))
	m.Handle("GET /console/static/", securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
	m.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.action(c.logout))
	m.HandleFunc("GET /console/{$}", c.page(c.overview))
	m.HandleFunc("GET /console/live", c.page(c.livePage))
	m.HandleFunc("POST /console/live/close", c.action(c.closeLive))
	m.HandleFunc("GET /console/devices", c.page(c.devicesPage))
	m.HandleFunc("GET /console/device", c.page(c.devicePage))
	m.HandleFunc("POST /console/device/revoke", c.action(c.revokeDevice))
	m.HandleFunc("GET /console/users", c.page(c.usersPage))
	m.HandleFunc("GET /console/user", c.page(c.userPage))
	m.HandleFunc("POST /console/user/revoke", c.action(c.revokeUser))
	m.HandleFunc("POST /console/session/revoke", c.action(c.revokeSession))
	m.HandleFunc("GET /console/decisions", c.page(c.decisionsPage))
	m.HandleFunc("GET /console/decisions/stream", c.authedOr(false, c.decisionStream))
	m.HandleFunc("GET /console/explain", c.page(c.explainPage))
	m.HandleFunc("GET /console/feeds", c.page(c.feedsPage))
	m.Handle("/console/", securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "There is no console page here.")
	})))
	c.mux = m
	c.host = c.hostOnly(m)
}

// securityHeaders sets the headers every console response carries.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: under no-referrer a browser sends
		// "Origin: null" with the console's own forms, which the origin
		// check must refuse.
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// session returns the request's signed-in session, or nil. On the
// admin listener that is a token sign-in's session; on the console host,
// the session of the operator the gateway let in, made when needed.
// A session is never taken to the other place: the console host's
// sessions are made for a login the gateway checks on every request.
func (c *Console) session(w http.ResponseWriter, r *http.Request) *session {
	var s *session
	if ck, err := r.Cookie(cookieName); err == nil {
		if s, err = c.seal.open(ck.Value, c.now()); err != nil || c.store.SessionRevoked(revocationID(s.ID)) {
			s = nil
		}
	}
	if op, ok := operatorFrom(r.Context()); ok {
		return c.hostSession(w, r, s, op)
	}
	if s != nil && s.Host {
		return nil
	}
	return s
}

// revocationID is the posture store's session id of a console session's
// sign-out, which every replica sharing the store sees.
func revocationID(sid string) string { return "console:" + sid }

// authed runs h for a signed-in operator; others are sent to sign in.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return c.authedOr(true, h)
}

// authedOr is authed; redirect says whether a GET without a session is
// sent to sign in (a page) or answered 401 (the event stream).
func (c *Console) authedOr(redirect bool, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			s := c.session(w, r)
			if s == nil {
				if redirect && r.Method == http.MethodGet {
					http.Redirect(w, r, "/console/login", http.StatusSeeOther)
					return
				}
				c.fail(w, r, nil, http.StatusUnauthorized, "Sign in to the console first.")
				return
			}
			h(w, r, s)
		})).ServeHTTP(w, r)
	}
}

// pageFunc builds one page: its template name and data, or an error
// that becomes a 4xx page.
type pageFunc func(r *http.Request, s *session) (name string, data any, err error)

// page serves a pageFunc for a signed-in operator.
func (c *Console) page(f pageFunc) http.HandlerFunc {
	return c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		name, data, err := f(r, s)
		if err != nil {
			c.failErr(w, r, s, err)
			return
		}
		c.render(w, r, s, http.StatusOK, name, data)
	})
}

// action serves a state-changing POST: signed in, from the console's own
// origin, with the session's CSRF token.
func (c *Console) action(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		if why := sameOrigin(r); why != "" {
			c.logger.Warn("console: refused a cross-site request", "path", r.URL.Path, "operator", s.Operator)
			c.fail(w, r, s, http.StatusForbidden, "Refused: "+why+".")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, s, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !validCSRF(s, r.PostForm.Get("csrf")) {
			c.fail(w, r, s, http.StatusForbidden, "Refused: the form's CSRF token is missing or belongs to another session. Reload the page and try again.")
			return
		}
		h(w, r, s)
	})
}

// errNotFound makes a page answer 404.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func (c *Console) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var qe *queryError
	var nf *notFoundError
	switch {
	case errors.As(err, &qe):
		c.fail(w, r, s, http.StatusBadRequest, "Bad request: "+qe.Error()+".")
	case errors.As(err, &nf):
		c.fail(w, r, s, http.StatusNotFound, nf.msg)
	default:
		c.logger.Error("console page failed", "path", r.URL.Path, "error", err)
		c.fail(w, r, s, http.StatusInternalServerError, "The page could not be built; the gateway's log says why.")
	}
}

// fail answers with an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, r, s, status, "error", errorData{Status: status, Title: http.StatusText(status), Message: msg})
}

type errorData struct {
	Status  int
	Title   string
	Message string
}

// layout is what every page's frame needs.
type layout struct {
	Title    string
	Nav      string
	Operator string
	IdP      string
	CSRF     string
	Data     any
}

var titles = map[string]string{
	"overview": "Overview", "live": "Live requests", "devices": "Devices", "device": "Device",
	"users": "Users", "user": "User", "decisions": "Decisions", "explain": "Explain a decision",
	"feeds": "Feeds", "login": "Sign in", "error": "Error",
}

// navOf is the navigation entry a page belongs to.
var navOf = map[string]string{"device": "devices", "user": "users", "explain": "decisions"}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, data any) {
	l := layout{Title: titles[name], Nav: name, Data: data}
	if n, ok := navOf[name]; ok {
		l.Nav = n
	}
	if s != nil {
		l.Operator, l.IdP, l.CSRF = s.Operator, s.IdP, s.CSRF
	}
	if e, ok := data.(errorData); ok {
		l.Title = e.Title
	}
	var buf bytes.Buffer
	if err := c.tmpl[name].ExecuteTemplate(&buf, "layout", l); err != nil {
		c.logger.Error("console: rendering a page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if h.Get("Content-Security-Policy") == "" {
		h.Set("Content-Security-Policy", csp)
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// loginPage shows the sign-in form, or sends a signed-in operator on.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.session(w, r) != nil {
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		}
		c.render(w, r, nil, http.StatusOK, "login", loginData{TokenOn: !c.token.IsZero()})
	})).ServeHTTP(w, r)
}

type loginData struct {
	TokenOn bool
	Host    bool // the console host, where the gateway's login is the sign-in
	Error   string
}

// login checks the admin token and starts a session. The token travels
// in the POST body only, never in a URL, and is never logged.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := sameOrigin(r); why != "" {
			c.fail(w, r, nil, http.StatusForbidden, "Refused: "+why+".")
			return
		}
		if _, host := operatorFrom(r.Context()); host || c.token.IsZero() {
			// On the console host operators sign in through the
			// gateway's identity provider; the token is for the admin
			// listener only.
			c.render(w, r, nil, http.StatusNotFound, "login", loginData{Host: host})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
			return
		}
		tok := r.PostForm.Get("token")
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), c.token.Bytes()) != 1 {
			c.logger.Warn("console: sign-in with a wrong admin token", "remote_ip", remoteIP(r))
			c.render(w, r, nil, http.StatusUnauthorized, "login", loginData{TokenOn: true, Error: "That is not the admin token."})
			return
		}
		s := newSession("admin-token", "token", c.now(), c.cfg.MaxAge())
		setCookie(w, r, c.seal.seal(s), c.cfg.MaxAge())
		c.logger.Info("console: operator signed in", "operator", s.Operator, "idp", s.IdP, "remote_ip", remoteIP(r))
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})).ServeHTTP(w, r)
}

// logout ends the console session here and, through the posture store,
// on every replica that shares it. On the console host it then sends the
// browser to the gateway's logout, which ends the login itself.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	now := c.now()
	c.seal.end(s, now)
	if _, err := c.store.Revoke(r.Context(), posture.Revocation{Kind: posture.RevokeSession, Session: revocationID(s.ID),
		User: s.Operator, Source: "console", ObservedAt: now, ExpiresAt: time.Unix(s.Expires, 0),
		Reasons: []string{"console sign-out"}}); err != nil {
		c.logger.Warn("console: recording a sign-out for other replicas", "operator", s.Operator, "error", err)
	}
	setCookie(w, r, "", -1)
	if s.Host {
		http.Redirect(w, r, c.hostLogout, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// writeAction records an operator's action in the decision log.
func (c *Console) writeAction(r *http.Request, s *session, action, target, reason, result string) {
	c.log.WriteAction(&audit.Action{Time: c.now(), Operator: s.Operator, IdP: s.IdP, Action: action,
		Target: target, Reason: reason, Result: result, RemoteIP: remoteIP(r)})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/sync/errgroup"

	"portcullis/enforcement"
	"portcullis/gateway/assertion"
	"portcullis/gateway/audit"
	"portcullis/gateway/console"
	"portcullis/identity"
	"portcullis/internal/conf"
	"portcullis/posture"
	"portcullis/posture/feeds"
	redisstore "portcullis/posture/redis"
)

// Options configures a Gateway beyond its configuration file.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry // nil: a new one
	Version  string
	// OnReady, if set, is called once every listener is open.
	OnReady func(*Gateway)
}

// Gateway is a running enforcement point. It is safe for concurrent use.
type Gateway struct {
	path string
	log  *slog.Logger
	reg  *prometheus.Registry

	cur      atomic.Pointer[snapshot] // never mutated after Store
	reloadMu sync.Mutex               // serializes Reload; readers never take it

	store       *posture.DB
	shared      *redisstore.Store // nil with the embedded store
	signer      *assertion.Signer
	audit       *audit.Log
	metrics     *metrics
	feedMetrics *feeds.Metrics
	ids         *idGen
	adminToken  conf.Secret
	live        *liveRegistry
	tunnels     *tunnelState
	limiter     *limiter
	console     *console.Console // nil when admin.console is off
	certGen     atomic.Uint64    // bumped when a CRL refresh revokes certificates
	onReady     func(*Gateway)

	ident *identity.State // logins in flight, SAML replay cache: outlive reloads

	echoOnce sync.Once
	echoLn   net.Listener

	ready    atomic.Bool
	addrsMu  sync.Mutex
	addrs    map[string]string // listener name → bound address (tests use :0)
	bgWG     sync.WaitGroup    // snapshot background work
	runCtx   context.Context
	modTime  time.Time
	shutdown time.Duration
}

// New loads the configuration at path, opens the state directory, and
// compiles the first snapshot. It starts nothing: call Run.
func New(path string, opts Options) (*Gateway, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return open(context.Background(), path, cfg, opts)
}

// open is the build serve and check share: from a decoded and validated
// configuration it reads every file the configuration names, opens the
// state, and compiles the first snapshot. It listens on nothing and
// starts no goroutine. ctx bounds the network fetches that warm caches
// (see [Gateway.build]). Errors are keyed like validation errors; as many
// as can be found are joined.
func open(ctx context.Context, path string, cfg *Config, opts Options) (*Gateway, error) {
	var err error
	g := &Gateway{path: path, log: opts.Logger, reg: opts.Registry, ids: newIDGen(), live: newLiveRegistry(), onReady: opts.OnReady, addrs: map[string]string{}}
	if g.log == nil {
		g.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
	}
	g.metrics = newMetrics(g.reg, opts.Version)
	g.ident = identity.NewState(g.reg)
	g.limiter = newLimiter(g.reg)
	g.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_live_requests",
		Help: "Requests being proxied now (websockets and streams included), watched by the re-evaluator.",
	}, func() float64 { return float64(g.live.Len()) }))
	if g.feedMetrics, err = feeds.NewMetrics(g.reg); err != nil {
		return nil, err
	}
	if g.tunnels, err = newTunnelState(g.reg); err != nil {
		return nil, err
	}
	var errs []error // problems that do not stop the build
	if cfg.Admin.TokenFile != "" {
		if g.adminToken, err = conf.ReadSecretFile(cfg.Admin.TokenFile); err != nil {
			errs = append(errs, conf.Errorf("admin.token_file", "%v", err))
		}
	}
	stateDir := cfg.State.Dir.String()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, conf.Errorf("state.dir", "creating state directory: %v", err)
	}
	if err := g.openStore(cfg, stateDir); err != nil {
		return nil, err
	}
	if err := g.store.RegisterMetrics(g.reg); err != nil {
		g.close()
		return nil, err
	}
	if g.signer, err = assertion.Open(stateDir, assertion.Options{Issuer: cfg.Assertion.Issuer, Lifetime: cfg.Assertion.Lifetime.Std()}); err != nil {
		g.close()
		return nil, conf.Errorf("state.dir", "opening assertion key: %v", err)
	}
	if g.audit, err = audit.New(cfg.Audit, audit.Options{Registerer: g.reg, Logger: g.log.With("component", "audit")}); err != nil {
		errs = append(errs, conf.Errorf("audit", "opening audit log: %v", err))
	} else if g.console, err = g.newConsole(cfg); err != nil {
		errs = append(errs, conf.AtKey("admin.console", err))
	}
	s, err := g.build(ctx, cfg)
	if err = errors.Join(append(errs, err)...); err != nil {
		g.close()
		return nil, err
	}
	g.cur.Store(s)
	g.seedDevPosture(cfg)
	g.shutdown = cfg.Shutdown.Std()
	if fi, err := os.Stat(path); err == nil {
		g.modTime = fi.ModTime()
	}
	return g, nil
}

// close releases what open acquired, for a Gateway that never ran (Run
// releases them itself).
func (g *Gateway) close() {
	if g.audit != nil {
		g.audit.Close()
	}
	g.ident.Close()
	g.store.Close()
}

// Store is the posture store, for the admin API and tests.
func (g *Gateway) Store() *posture.DB { return g.store }

// Addr returns the bound address of a listener ("https0", "h3_0", "admin",
// "redirect0"), useful when the configuration asked for port 0.
func (g *Gateway) Addr(name string) string {
	g.addrsMu.Lock()
	defer g.addrsMu.Unlock()
	return g.addrs[name]
}

func (g *Gateway) setAddr(name, addr string) {
	g.addrsMu.Lock()
	g.addrs[name] = addr
	g.addrsMu.Unlock()
}

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests finish within the configured shutdown timeout, and returns.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.store.Close()
	s := g.cur.Load()
	g.runCtx = ctx
	g.startSnapshot(s)

	// Listen: open every listener before serving on any, so a port that
	// is taken fails the start, not a later reload.
	ls, err := g.listen(s.cfg)
	if err != nil {
		return err
	}
	eg, egCtx := errgroup.WithContext(ctx)
	// Serve, and run what lives as long as the servers.
	ls.serve(eg)
	eg.Go(func() error { return g.audit.Run(egCtx) })
	if g.console != nil {
		eg.Go(func() error { return g.console.Run(egCtx) })
	}
	eg.Go(func() error { return g.runStore(egCtx) })
	eg.Go(func() error { g.watchConfig(egCtx); return nil })
	// Keep deciding: re-evaluate live requests as feeds change state.
	changes, unsubscribe := g.store.Subscribe(4096)
	re := g.reevaluator(changes)
	eg.Go(func() error { defer unsubscribe(); return re.Run(egCtx) })
	// Drain when the context ends or any part fails.
	eg.Go(func() error {
		<-egCtx.Done()
		g.ready.Store(false)
		ls.shutdown(g.shutdown)
		g.log.Info("stopped")
		return nil
	})
	g.ready.Store(true)
	g.log.Info("serving", "listeners", g.listenerAddrs())
	if g.onReady != nil {
		g.onReady(g)
	}
	err = eg.Wait()
	g.cleanup()
	return err
}

// listeners is every server the gateway runs, opened and not yet serving.
type listeners struct {
	servers  []interface{ Shutdown(context.Context) error }
	serveFns []func() error
	closers  []io.Closer
}

// serve runs every server in eg. A server that stops because it was shut
// down is no failure.
func (ls *listeners) serve(eg *errgroup.Group) {
	for _, fn := range ls.serveFns {
		eg.Go(func() error {
			if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
	}
}

// shutdown drains every server at once, giving in-flight requests up to
// grace, then closes the listeners.
func (ls *listeners) shutdown(grace time.Duration) {
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range ls.servers {
		wg.Go(func() { _ = srv.Shutdown(sctx) })
	}
	wg.Wait()
	ls.close()
}

func (ls *listeners) close() {
	for _, c := range ls.closers {
		c.Close()
	}
}

// listen opens the HTTPS (TCP and QUIC), redirect and admin listeners of
// cfg and builds their servers. On an error it closes what it opened.
func (g *Gateway) listen(cfg *Config) (*listeners, error) {
	ls := &listeners{}
	fail := func(err error) (*listeners, error) {
		ls.close()
		return nil, err
	}
	errLog := log.New(io.Discard, "", 0)
	httpsPort := ""
	for i := range cfg.Listen {
		l := &cfg.Listen[i]
		if l.Redirect {
			continue
		}
		idx := i
		outer := &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				return g.cur.Load().listeners[idx].forHello(hello), nil
			},
		}
		if hasProto(l.Protocols, ProtoH2, ProtoHTTP1) {
			ln, err := net.Listen("tcp", l.Address)
			if err != nil {
				return fail(fmt.Errorf("listen[%d]: %w", i, err))
			}
			ls.closers = append(ls.closers, ln)
			g.setAddr(fmt.Sprintf("https%d", i), ln.Addr().String())
			if httpsPort == "" {
				_, httpsPort, _ = net.SplitHostPort(ln.Addr().String())
			}
			srv := &http.Server{
				Handler:           g,
				TLSConfig:         outer,
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       120 * time.Second,
				MaxHeaderBytes:    64 << 10,
				ErrorLog:          errLog,
				ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return connContext(withListener(ctx, idx), c) },
			}
			srv.Protocols = new(http.Protocols)
			srv.Protocols.SetHTTP1(hasProto(l.Protocols, ProtoHTTP1))
			srv.Protocols.SetHTTP2(hasProto(l.Protocols, ProtoH2))
			if hasProto(l.Protocols, ProtoH2) {
				if err := g.configureHTTP2(srv, &cfg.Limits); err != nil {
					return fail(fmt.Errorf("listen[%d]: %w", i, err))
				}
			}
			ls.servers = append(ls.servers, srv)
			ls.serveFns = append(ls.serveFns, func() error { return srv.ServeTLS(ln, "", "") })
		}
		if hasProto(l.Protocols, ProtoH3) {
			udp, err := net.ListenPacket("udp", l.Address)
			if err != nil {
				return fail(fmt.Errorf("listen[%d] (udp): %w", i, err))
			}
			ls.closers = append(ls.closers, udp)
			g.setAddr(fmt.Sprintf("h3_%d", i), udp.LocalAddr().String())
			h3 := &http3.Server{
				Handler:     g.h3Handler(),
				TLSConfig:   http3.ConfigureTLSConfig(outer),
				IdleTimeout: 120 * time.Second,
				QUICConfig: &quic.Config{Allow0RTT: false, MaxIdleTimeout: 120 * time.Second,
					MaxIncomingStreams: int64(cfg.Limits.Streams.MaxConcurrent)},
				ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
					return quicConnContext(withListener(ctx, idx), c)
				},
			}
			ls.servers = append(ls.servers, h3)
			ls.serveFns = append(ls.serveFns, func() error { return h3.Serve(udp) })
		}
	}
	for i := range cfg.Listen {
		l := &cfg.Listen[i]
		if !l.Redirect {
			continue
		}
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return fail(fmt.Errorf("listen[%d]: %w", i, err))
		}
		ls.closers = append(ls.closers, ln)
		g.setAddr(fmt.Sprintf("redirect%d", i), ln.Addr().String())
		port := httpsPort
		if l.RedirectPort != 0 {
			port = fmt.Sprint(l.RedirectPort)
		}
		redirect := redirectHandler(port)
		// ACME HTTP-01 challenges are answered here, by whichever server
		// certificates the current configuration manages.
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.cur.Load().server.HTTPChallengeHandler(redirect).ServeHTTP(w, r)
		})
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		ls.servers = append(ls.servers, srv)
		ls.serveFns = append(ls.serveFns, func() error { return srv.Serve(ln) })
	}
	if cfg.Admin.Listen != "off" {
		ln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			return fail(fmt.Errorf("admin.listen: %w", err))
		}
		ls.closers = append(ls.closers, ln)
		g.setAddr("admin", ln.Addr().String())
		srv := &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		ls.servers = append(ls.servers, srv)
		ls.serveFns = append(ls.serveFns, func() error { return srv.Serve(ln) })
	}

	return ls, nil
}

// reevaluator builds the re-evaluator of live requests over the store's
// changes.
func (g *Gateway) reevaluator(changes <-chan posture.Change) *enforcement.Reevaluator {
	return &enforcement.Reevaluator{Registry: g.live, State: g.store, Changes: changes,
		// Live requests are re-decided under the running configuration's
		// policies, so a reload that tightens one closes what it no
		// longer allows at the next sweep (within a second).
		Policies: func(name string) *enforcement.Policy {
			s := g.cur.Load()
			if res := s.byName[name]; res != nil {
				return res.policy
			}
			if t := s.tunnels.byName[name]; t != nil {
				return t.Policy
			}
			return nil
		},
		OnClose: func(t *enforcement.Tracked, d enforcement.Decision) {
			g.metrics.reevalClosed.WithLabelValues(string(d.Reason)).Inc()
			g.log.Warn("closing a live request after re-evaluation", "reason", string(d.Reason), "rule", d.Rule,
				"method", t.Request.Method, "host", t.Request.Host, "path", t.Request.Path)
		},
		OnSweep: func(int) { g.metrics.reevalSweeps.Inc() }}
}

// cleanup stops what outlives the servers: the last snapshot's
// background work, the identity providers' state, the demo upstream.
func (g *Gateway) cleanup() {
	if cur := g.cur.Load(); cur != nil {
		cur.stop()
	}
	g.ident.Close()
	g.bgWG.Wait()
	g.echoOnce.Do(func() {}) // waits for a start in progress; none follows
	if g.echoLn != nil {
		g.echoLn.Close()
	}
}

func (g *Gateway) listenerAddrs() map[string]string {
	g.addrsMu.Lock()
	defer g.addrsMu.Unlock()
	m := make(map[string]string, len(g.addrs))
	for k, v := range g.addrs {
		m[k] = v
	}
	return m
}

func (g *Gateway) startSnapshot(s *snapshot) {
	ctx, cancel := context.WithCancel(g.runCtx)
	s.cancel = cancel
	if s.server != nil {
		g.bgWG.Add(1)
		go func() {
			defer g.bgWG.Done()
			if err := s.server.Run(ctx); err != nil && ctx.Err() == nil {
				g.log.Error("server certificate management stopped", "error", err)
			}
		}()
	}
	if s.devices != nil {
		g.bgWG.Add(1)
		go func() { defer g.bgWG.Done(); s.devices.Run(ctx) }()
	}
	fctx, stopFeeds := context.WithCancel(ctx)
	s.stopFeeds = stopFeeds
	for _, r := range s.feeds {
		g.bgWG.Add(1)
		s.feedsWG.Add(1)
		go func() {
			defer g.bgWG.Done()
			defer s.feedsWG.Done()
			if err := r.Run(fctx); err != nil && fctx.Err() == nil {
				g.log.Error("feed stopped", "feed", r.Name(), "error", err)
			}
		}()
	}
}

// Reload reads the configuration file again and, if it is valid and can be
// compiled, swaps it in. In-flight requests finish on the configuration
// they started with. On error the running configuration stays and the
// error says why. Listener, admin and state addresses need a restart.
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	// A reload (SIGHUP) also reopens the decision log file, whatever
	// becomes of the configuration: logrotate's postrotate sends it.
	_ = g.audit.Reopen() // logged by the audit log
	err := g.reloadLocked()
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		g.log.Error("configuration reload failed; keeping the running configuration", "error", err)
		return err
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	g.metrics.lastReload.SetToCurrentTime()
	g.log.Info("configuration reloaded")
	return nil
}

func (g *Gateway) reloadLocked() error {
	if fi, err := os.Stat(g.path); err == nil {
		g.modTime = fi.ModTime()
	}
	cfg, err := LoadConfig(g.path)
	if err != nil {
		return err
	}
	old := g.cur.Load()
	if !reflect.DeepEqual(cfg.Listen, old.cfg.Listen) || !reflect.DeepEqual(cfg.Admin, old.cfg.Admin) || cfg.State != old.cfg.State {
		return errors.New("listen, admin and state changes need a restart")
	}
	if cfg.Limits.Streams.MaxConcurrent != old.cfg.Limits.Streams.MaxConcurrent {
		return errors.New("limits.streams.max_concurrent changes need a restart")
	}
	s, err := g.build(context.Background(), cfg)
	if err != nil {
		return err
	}
	if g.runCtx != nil {
		// One generation of feed pollers at a time: the same feed must
		// not poll twice at once.
		if old.stopFeeds != nil {
			old.stopFeeds()
			old.feedsWG.Wait()
		}
		g.startSnapshot(s)
	}
	g.cur.Store(s)
	old.stop()
	return nil
}

// watchConfig reloads when the configuration file's modification time
// changes. Editors replace files in several steps, so a change is acted on
// only once the file parses; a broken intermediate state is logged by
// Reload and retried at the next change.
func (g *Gateway) watchConfig(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(g.path)
		if err != nil {
			continue
		}
		g.reloadMu.Lock()
		changed := !fi.ModTime().Equal(g.modTime)
		g.reloadMu.Unlock()
		if changed {
			_ = g.Reload()
		}
	}
}

// redirectHandler sends every plain-HTTP request to HTTPS.
func redirectHandler(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if host == "" || validHostPattern(host) != nil || host == "*" {
			http.Error(w, "bad host", http.StatusBadRequest)
			return
		}
		if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
			host = "[" + host + "]"
		}
		if port != "443" && port != "" {
			host += ":" + port
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

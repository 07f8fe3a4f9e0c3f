package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"portcullis/certs"
	"portcullis/enforcement"
	"portcullis/identity"
	"portcullis/internal/conf"
	"portcullis/internal/deny"
	"portcullis/posture/feeds"
)

// snapshot is one compiled configuration. Nothing in it changes after
// build returns; a reload builds a new one.
type snapshot struct {
	gw        *Gateway
	cfg       *Config
	router    *router
	resources []*resource
	byName    map[string]*resource
	devices   *certs.Devices
	server    *certs.ServerCerts
	listeners []*listenerTLS
	system    map[string]http.Handler // exact paths under /.portcullis/ and /.well-known/portcullis/
	logins    *identity.Set           // by policy.login name
	feeds     []feeds.Receiver
	tunnels   *tunnelTable
	strip     []string // canonical header names to remove

	altSvc      string
	altSvcValue []string

	cancel    context.CancelFunc // stops this snapshot's background work
	stopFeeds context.CancelFunc // stops its feeds' poll loops
	feedsWG   sync.WaitGroup
}

// resource is one compiled resource.
type resource struct {
	cfg       *ResourceConfig
	name      string
	policy    *enforcement.Policy
	proxy     *httputil.ReverseProxy
	transport http.RoundTripper
	local     localUpstream // serves allowed requests in process instead of proxy (the console host)
	metrics   resourceMetrics
}

// listenerTLS holds one listener's TLS configurations, one per client
// certificate mode, and which mode each SNI name gets.
type listenerTLS struct {
	def       *tls.Config
	challenge *tls.Config // for ACME TLS-ALPN-01 validation handshakes
	server    *certs.ServerCerts
	exact     map[string]*tls.Config
	wild      map[string]*tls.Config
}

func (l *listenerTLS) forHello(hello *tls.ClientHelloInfo) *tls.Config {
	if l.server.IsTLSALPNChallenge(hello) {
		return l.challenge
	}
	return l.forHost(hello.ServerName)
}

func (l *listenerTLS) forHost(sni string) *tls.Config {
	sni = strings.ToLower(sni)
	if c, ok := l.exact[sni]; ok {
		return c
	}
	if i := strings.IndexByte(sni, '.'); i > 0 {
		if c, ok := l.wild[sni[i+1:]]; ok {
			return c
		}
	}
	return l.def
}

// build compiles cfg into a snapshot. It loads every file the
// configuration names; errors are keyed like validation errors so that
// `portcullis check` can place them in the file. It listens on nothing and
// starts no goroutine.
//
// ctx bounds the network fetches build makes to warm caches before
// serving: CRL URLs and SAML metadata URLs. Their failures are logged, not
// returned (they are retried while serving), so check passes a done ctx
// and makes no request at all.
func (g *Gateway) build(ctx context.Context, cfg *Config) (*snapshot, error) {
	s := &snapshot{cfg: cfg, gw: g, system: map[string]http.Handler{}}
	var errs []error

	var dev *devFiles
	if cfg.Dev.Dir != "" {
		var err error
		if dev, err = provisionDev(cfg); err != nil {
			return nil, conf.AtKey("dev.dir", err)
		}
	}

	copts := certs.Options{Logger: g.log.With("component", "certs"), StateDir: cfg.State.Dir.String()}
	server, err := certs.NewServerCerts(cfg.TLS, copts)
	if err != nil {
		errs = append(errs, conf.AtKey("tls", err))
	} else {
		if dev != nil && len(cfg.TLS.Certificates) == 0 {
			server.AddCertificate(dev.server)
		}
		s.server = server
	}
	if len(cfg.Devices.CAs) > 0 {
		d, err := certs.NewDevices(cfg.Devices, copts)
		if err != nil {
			errs = append(errs, conf.AtKey("devices", err))
		} else {
			if len(cfg.Devices.Revocation.CRLURLs) > 0 {
				// Fetch CRLs before serving: until the first fetch a CRL
				// counts as stale, which with stale: deny refuses everyone.
				ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				if err := d.RefreshCRLs(ctx); err != nil {
					g.log.Warn("fetching CRLs before serving", "error", err)
				}
				cancel()
			}
			d.OnRevoked(g.certsRevoked)
		}
		s.devices = d
	}

	for i := range cfg.Resources {
		rc := &cfg.Resources[i]
		key := fmt.Sprintf("resources[%d]", i)
		pol, err := enforcement.Compile(rc.Policy, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()})
		if err != nil {
			errs = append(errs, conf.AtKey(key+".policy", err))
			continue
		}
		res := &resource{cfg: rc, name: rc.Name, policy: pol}
		target := rc.Upstream
		if target == "builtin:echo" {
			target = "http://" + echoHost // dialed by dialEcho
		}
		onErr := func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errBodyTimeout) {
				return // the handler answers 408 (see admission.finish)
			}
			if e := liveFrom(r.Context()); e != nil {
				if d, closed := e.closedBy(); closed {
					// Closed by re-evaluation before the response began:
					// answer as a new request would be answered.
					status := http.StatusForbidden
					if d.Verdict == enforcement.Login || d.Verdict == enforcement.StepUp {
						status = http.StatusUnauthorized
					}
					info := deny.Info{Status: status, Reason: string(d.Reason), Title: http.StatusText(status),
						Detail: d.Reason.Message(), RequestID: requestID(r), Resource: rc.Name}
					if status == http.StatusForbidden {
						info.Remediation = rc.Remediation
					}
					deny.Write(w, r, info)
					return
				}
			}
			status, reason := upstreamStatus(r.Context(), err)
			if status == 499 {
				return // the client went away; nobody to answer
			}
			logUpstreamError(g.log, r, rc.Name, err)
			deny.Write(w, r, deny.Info{Status: status, Reason: reason, Title: http.StatusText(status),
				Detail: upstreamDetail(status), RequestID: requestID(r), Resource: rc.Name})
		}
		res.proxy, res.transport, err = newProxy(rc, target, cfg, onErr)
		if err != nil {
			errs = append(errs, conf.AtKey(key+".upstream", err))
			continue
		}
		if rc.Upstream == "builtin:echo" {
			res.transport.(*http.Transport).DialContext = g.dialEcho
		}
		s.resources = append(s.resources, res)
	}
	if err := g.buildConsoleResource(cfg, s); err != nil {
		errs = append(errs, err)
	}
	if err := buildTunnels(cfg, s); err != nil {
		errs = append(errs, err)
	}
	s.router = newRouter(s.resources)
	s.byName = make(map[string]*resource, len(s.resources))
	for _, res := range s.resources {
		s.byName[res.name] = res
	}

	for i, fc := range cfg.Posture.Feeds {
		if fc.ReportsDevices() && fc.DeviceCA == "" && len(cfg.Devices.CAs) == 1 {
			fc.DeviceCA = cfg.Devices.CAs[0].Name
		}
		r, err := feeds.New(fc, g.store, feeds.Options{Logger: g.log.With("component", "feeds"), Metrics: g.feedMetrics})
		if err != nil {
			errs = append(errs, conf.AtKey(fmt.Sprintf("posture.feeds[%d]", i), err))
			continue
		}
		s.system[r.Path()] = r
		s.feeds = append(s.feeds, r)
	}
	s.system["/.well-known/portcullis/jwks.json"] = g.signer.Handler()
	if err := g.buildLogins(ctx, cfg, s); err != nil {
		errs = append(errs, conf.AtKey("identity", err))
	}

	for _, h := range cfg.Headers.Strip {
		s.strip = append(s.strip, http.CanonicalHeaderKey(h))
	}
	for _, l := range cfg.Listen {
		if !l.Redirect && hasProto(l.Protocols, ProtoH3) && hasProto(l.Protocols, ProtoH2, ProtoHTTP1) {
			if _, port, err := splitPort(l.Address); err == nil {
				s.altSvc = `h3=":` + port + `"; ma=86400`
				s.altSvcValue = []string{s.altSvc}
			}
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range cfg.Listen {
		s.listeners = append(s.listeners, s.listenerTLS(&cfg.Listen[i]))
	}
	return s, nil
}

// listenerTLS builds the three TLS configurations of a listener. Each is
// frozen once built: crypto/tls requires a Config not to change once used.
func (s *snapshot) listenerTLS(l *ListenerConfig) *listenerTLS {
	minVersion := uint16(tls.VersionTLS12)
	if s.cfg.TLS.MinVersion == "1.3" {
		minVersion = tls.VersionTLS13
	}
	var protos []string
	if hasProto(l.Protocols, ProtoH2) {
		protos = append(protos, "h2")
	}
	if hasProto(l.Protocols, ProtoHTTP1) {
		protos = append(protos, "http/1.1")
	}
	protos = append(protos, s.server.NextProtos()...) // acme-tls/1 when TLS-ALPN-01 is on
	mk := func(mode ClientAuth) *tls.Config {
		c := &tls.Config{
			MinVersion:     minVersion,
			NextProtos:     protos,
			GetCertificate: s.server.GetCertificate,
		}
		if s.devices == nil || mode == ClientAuthOff {
			return c
		}
		c.ClientCAs = s.devices.Pool(nil)
		switch mode {
		case ClientAuthOptional:
			// Asked for but not enforced here: the resource's policy
			// decides, and a browser gets a page that says why.
			c.ClientAuth = tls.RequestClientCert
		default: // required, and what anything else fails to
			// No certificate, or one that does not verify, fails the
			// handshake: that is what required means at this layer.
			c.ClientAuth = tls.RequireAnyClientCert
			c.VerifyConnection = s.devices.VerifyConnection(nil)
		}
		return c
	}
	byMode := map[ClientAuth]*tls.Config{}
	get := func(m ClientAuth) *tls.Config {
		if c, ok := byMode[m]; ok {
			return c
		}
		byMode[m] = mk(m)
		return byMode[m]
	}
	// An ACME validator answering a TLS-ALPN-01 challenge has no device
	// certificate: that one handshake is never asked for one.
	lt := &listenerTLS{def: get(l.ClientAuth), challenge: get(ClientAuthOff), server: s.server,
		exact: map[string]*tls.Config{}, wild: map[string]*tls.Config{}}
	for h, m := range l.Hosts {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "*.") {
			lt.wild[h[2:]] = get(m)
		} else {
			lt.exact[h] = get(m)
		}
	}
	return lt
}

func (s *snapshot) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, r := range s.resources {
		if t, ok := r.transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
}

func upstreamDetail(status int) string {
	if status == http.StatusGatewayTimeout {
		return "The application did not answer in time."
	}
	return "The application could not be reached."
}

func hasProto(ps []Protocol, want ...Protocol) bool {
	for _, p := range ps {
		for _, w := range want {
			if p == w {
				return true
			}
		}
	}
	return false
}

func splitPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("no port in %q", addr)
	}
	if _, err := strconv.Atoi(addr[i+1:]); err != nil {
		return "", "", err
	}
	return addr[:i], addr[i+1:], nil
}

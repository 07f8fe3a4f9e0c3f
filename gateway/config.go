package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"

	"portcullis/certs"
	"portcullis/enforcement"
	"portcullis/gateway/audit"
	"portcullis/gateway/console"
	"portcullis/gateway/tunnel"
	"portcullis/internal/conf"
	"portcullis/posture"
	redisstore "portcullis/posture/redis"
)

// Config is the whole configuration file. docs/config.md documents every
// key; the sections owned by other packages document themselves there.
type Config struct {
	// Listen lists the client-facing listeners. Default: one HTTPS listener
	// on 127.0.0.1:8443 serving HTTP/1.1, HTTP/2 and HTTP/3.
	Listen []ListenerConfig `yaml:"listen"`
	// Admin is the operator listener: /healthz, /readyz, /metrics.
	Admin AdminConfig `yaml:"admin"`
	// State is where the gateway keeps what must survive a restart.
	State StateConfig `yaml:"state"`
	// Dev turns on the quickstart: a dev CA, certificates and a feed secret
	// are created under Dev.Dir when missing.
	Dev DevConfig `yaml:"dev"`
	// TLS holds the server certificates.
	TLS certs.ServerConfig `yaml:"tls"`
	// Devices lists the device CAs and how identity is read from their
	// certificates.
	Devices certs.DevicesConfig `yaml:"devices"`
	// Identity configures the identity providers users log in with.
	Identity IdentityConfig `yaml:"identity"`
	// Posture configures posture freshness and the feeds that push it.
	Posture posture.Config `yaml:"posture"`
	// Audit configures the decision log.
	Audit audit.Config `yaml:"audit"`
	// Headers configures what the gateway strips from requests.
	Headers HeadersConfig `yaml:"headers"`
	// Assertion configures the signed identity assertion sent upstream.
	Assertion AssertionConfig `yaml:"assertion"`
	// Resources are the protected applications, matched by host and path.
	Resources []ResourceConfig `yaml:"resources"`
	// Tunnels are the tunnel resources: CONNECT endpoints, matched by the
	// proxy host a client connects to (docs/tunnels.md).
	Tunnels []tunnel.Config `yaml:"tunnels"`
	// Limits bound what one client can make the gateway hold.
	Limits LimitsConfig `yaml:"limits"`
	// Shutdown is how long in-flight requests may take to finish on
	// SIGTERM (default 15s).
	Shutdown conf.Duration `yaml:"shutdown_timeout"`
}

// ListenerConfig is one client-facing address.
type ListenerConfig struct {
	// Address is host:port. TCP for HTTP/1.1 and HTTP/2, UDP for HTTP/3.
	Address string `yaml:"address"`
	// Protocols to serve: any of "http/1.1", "h2", "h3". Default all three.
	// A listener with only "h3" opens no TCP socket.
	Protocols []Protocol `yaml:"protocols"`
	// ClientAuth is whether the TLS handshake asks for a device certificate:
	// "required" (no certificate, or one that does not verify, fails the
	// handshake), "optional" (asked for; a missing or bad one is judged per
	// resource, with a deny page), or "off". Default "optional".
	ClientAuth ClientAuth `yaml:"client_auth"`
	// Hosts overrides ClientAuth per SNI name ("api.example.com" or
	// "*.example.com").
	Hosts map[string]ClientAuth `yaml:"hosts"`
	// Redirect makes this a plain-HTTP listener that only redirects to
	// HTTPS (to RedirectPort, default the first HTTPS listener's port).
	Redirect     bool `yaml:"redirect"`
	RedirectPort int  `yaml:"redirect_port"`
}

// AdminConfig is the operator listener.
type AdminConfig struct {
	// Listen is host:port (default 127.0.0.1:9090); "off" disables it.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token of the admin API (/v1/...); without
	// it the API is off and only /healthz, /readyz and /metrics answer.
	TokenFile conf.Path `yaml:"token_file"`
	// Pprof serves Go's profiler at /debug/pprof/ on the admin listener
	// (default false). Profiles show request paths and timing: keep the
	// admin listener on loopback when this is on.
	Pprof bool `yaml:"pprof"`
	// Console is the admin console at /console/ (docs/console.md).
	Console console.Config `yaml:"console"`
}

// StateConfig says where state lives.
type StateConfig struct {
	// Dir holds the posture database and the assertion signing key
	// (default ./data, relative to the config file).
	Dir conf.Path `yaml:"dir"`
	// Redis, when set, keeps posture, risk, revocations, event-id dedup,
	// poller cursors and replay caches in Redis, shared by every replica
	// (docs/scaling.md); Dir then holds only the assertion key.
	Redis *redisstore.Config `yaml:"redis"`
}

// DevConfig is the quickstart's self-provisioning.
type DevConfig struct {
	// Dir, when set, is where the dev CA, the server and sample device
	// certificates, and the demo feed secret are created if missing.
	Dir conf.Path `yaml:"dir"`
}

// HeadersConfig says which request headers never reach an upstream.
type HeadersConfig struct {
	// Strip lists extra headers to remove from every request before the
	// identity headers are added. Every X-Portcullis-* header is always
	// removed.
	Strip []string `yaml:"strip"`
}

// AssertionConfig configures the signed JWT sent upstream.
type AssertionConfig struct {
	// Issuer is the assertion's iss (default "portcullis").
	Issuer string `yaml:"issuer"`
	// Lifetime is how long an assertion is valid (default 5m).
	Lifetime conf.Duration `yaml:"lifetime"`
}

// ResourceConfig is one protected application.
type ResourceConfig struct {
	// Name identifies the resource in logs, metrics and assertions.
	Name string `yaml:"name"`
	// Hosts are exact names or one-label wildcards ("*.example.com"); "*"
	// matches any host.
	Hosts []string `yaml:"hosts"`
	// Paths are path prefixes matched segment-wise ("/api" matches /api
	// and /api/x, not /apix). Default ["/"].
	Paths []string `yaml:"paths"`
	// Upstream is http://, https:// or h2c:// host:port, or "builtin:echo"
	// for the demo upstream that echoes the identity it receives.
	Upstream string `yaml:"upstream"`
	// UpstreamTLS configures an https:// upstream.
	UpstreamTLS UpstreamTLSConfig `yaml:"upstream_tls"`
	// Timeouts bound the upstream exchange.
	Timeouts TimeoutsConfig `yaml:"timeouts"`
	// Policy decides who and what may reach it.
	Policy enforcement.PolicyConfig `yaml:"policy"`
	// Remediation is where a denied user can fix their device, e.g. the
	// UEM self-service portal. Shown on deny pages.
	Remediation string `yaml:"remediation"`
	// PreserveHost sends the client's Host upstream (default true).
	PreserveHost *bool `yaml:"preserve_host"`
	// CaseInsensitive matches Paths in any case ("/ADMIN" is under
	// "/admin"). Set it when the upstream folds case (IIS, and many apps
	// on Windows or macOS file systems), or a path in another case reaches
	// it past this resource's policy. Default false.
	CaseInsensitive bool `yaml:"case_insensitive"`
	// Upgrades lists the protocols a client may switch to with Upgrade
	// (HTTP/1.1); any other offer is removed before the upstream sees it.
	// Default [websocket].
	Upgrades []string `yaml:"upgrades"`
}

// UpstreamTLSConfig is how the gateway trusts an https:// upstream.
type UpstreamTLSConfig struct {
	// CAFile is a PEM bundle of roots (default: the system roots).
	CAFile conf.Path `yaml:"ca_file"`
	// ServerName overrides the name checked in the upstream's certificate.
	ServerName string `yaml:"server_name"`
}

// TimeoutsConfig bounds an upstream exchange.
type TimeoutsConfig struct {
	// Dial is the connect timeout (default 5s).
	Dial conf.Duration `yaml:"dial"`
	// ResponseHeader is how long to wait for the upstream's response
	// headers (default 60s); 504 after it.
	ResponseHeader conf.Duration `yaml:"response_header"`
}

// LoadConfig reads, decodes and validates a configuration file. Every
// problem is reported, each as a *conf.PosError naming file, line, column
// and key; the returned error joins them.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig is [LoadConfig] on bytes already read; path is used for
// messages and to resolve relative paths.
func ParseConfig(path string, data []byte) (*Config, error) {
	c, _, errs := decodeConfig(path, data)
	if len(errs) > 0 {
		return nil, conf.JoinPos(errs)
	}
	return c, nil
}

// decodeConfig decodes and validates. Validation runs even when decoding
// found problems, so one run reports both kinds; a validation error about a
// key that already failed to decode (or lies inside or around one) is
// dropped, since it only repeats the first.
func decodeConfig(path string, data []byte) (*Config, conf.Positions, []*conf.PosError) {
	// The state directory's default is relative to the file, like every
	// path in it; set it before decoding, which may replace it.
	c := Config{State: StateConfig{Dir: conf.Path(conf.BaseDir(path)).Join("data")}}
	pos, derr := conf.Decode(path, data, &c)
	c.applyDefaults()
	decoded := conf.Locate(path, pos, derr)
	if len(decoded) == 1 && strings.HasPrefix(decoded[0].Msg, "invalid YAML") {
		return nil, pos, decoded // not YAML at all: nothing to validate
	}
	var errs []*conf.PosError
	errs = append(errs, decoded...)
	for _, e := range conf.Locate(path, pos, c.Validate()) {
		if !overlaps(e.Key, decoded) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			return errs[i].Line < errs[j].Line || errs[i].Line == errs[j].Line && errs[i].Col < errs[j].Col
		})
		return nil, pos, errs
	}
	return &c, pos, nil
}

func overlaps(key string, errs []*conf.PosError) bool {
	under := func(a, b string) bool { // a is b or inside it
		return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
	}
	for _, e := range errs {
		if e.Key != "" && (under(key, e.Key) || under(e.Key, key)) {
			return true
		}
	}
	return false
}

func (c *Config) applyDefaults() {
	c.Posture.ApplyDefaults()
	c.Limits.ApplyDefaults()
	if len(c.Listen) == 0 {
		c.Listen = []ListenerConfig{{Address: "127.0.0.1:8443"}}
	}
	for i := range c.Listen {
		l := &c.Listen[i]
		if !l.Redirect && len(l.Protocols) == 0 {
			l.Protocols = []Protocol{ProtoHTTP1, ProtoH2, ProtoH3}
		}
		if l.ClientAuth == "" {
			l.ClientAuth = ClientAuthOptional
		}
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9090"
	}
	if c.Assertion.Issuer == "" {
		c.Assertion.Issuer = "portcullis"
	}
	if c.Assertion.Lifetime == 0 {
		c.Assertion.Lifetime = conf.Duration(5 * 60e9)
	}
	if c.Shutdown == 0 {
		c.Shutdown = conf.Duration(15e9)
	}
	for i := range c.Tunnels {
		c.Tunnels[i].ApplyDefaults()
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		if len(r.Paths) == 0 {
			r.Paths = []string{"/"}
		}
		if r.Timeouts.Dial == 0 {
			r.Timeouts.Dial = conf.Duration(5e9)
		}
		if r.Timeouts.ResponseHeader == 0 {
			r.Timeouts.ResponseHeader = conf.Duration(60e9)
		}
	}
}

// Validate reports every problem in c, each keyed by its path in the file.
// It does no I/O.
func (c *Config) Validate() error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, conf.AtKey(key, err)) }

	if c.State.Redis != nil {
		add("state.redis", c.State.Redis.Validate())
	}
	httpsListeners := 0
	addrs := map[string]bool{}
	for i, l := range c.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			errs = append(errs, conf.Errorf(key+".address", "want host:port, got %q", l.Address))
		}
		if l.Redirect {
			if len(l.Protocols) > 0 {
				errs = append(errs, conf.Errorf(key+".protocols", "a redirect listener serves plain HTTP only"))
			}
		} else {
			httpsListeners++
			for h := range l.Hosts {
				if err := validHostPattern(h); err != nil {
					errs = append(errs, conf.Errorf(key+".hosts."+h, "%v", err))
				}
			}
			if len(c.Devices.CAs) == 0 {
				// A listener asking for certificates with no CA to check
				// them against would accept none: say so instead.
				if l.ClientAuth == ClientAuthRequired {
					errs = append(errs, conf.Errorf(key+".client_auth", "required, but devices.cas is empty"))
				}
			}
		}
		if addrs[l.Address] {
			errs = append(errs, conf.Errorf(key+".address", "address %s is used by another listener", l.Address))
		}
		addrs[l.Address] = true
	}
	if httpsListeners == 0 {
		errs = append(errs, conf.Errorf("listen", "no HTTPS listener"))
	}
	if c.State.Dir == "" {
		errs = append(errs, conf.Errorf("state.dir", "must not be empty"))
	}
	if c.Admin.Listen != "off" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			errs = append(errs, conf.Errorf("admin.listen", "want host:port or off, got %q", c.Admin.Listen))
		}
	}
	if len(c.TLS.Certificates) == 0 && c.Dev.Dir == "" {
		errs = append(errs, conf.Errorf("tls.certificates", "no server certificate (list one, or set dev.dir for generated dev certificates)"))
	}
	add("admin.console", c.Admin.Console.Validate())
	errs = append(errs, c.validateConsole())
	add("tls", c.TLS.Validate())
	add("devices", c.Devices.Validate())
	add("identity", c.Identity.Validate())
	add("posture", c.Posture.Validate())
	add("audit", c.Audit.Validate())
	add("limits", c.Limits.Validate())
	for i, h := range c.Headers.Strip {
		if h == "" || strings.ContainsAny(h, " :\t") {
			errs = append(errs, conf.Errorf(fmt.Sprintf("headers.strip[%d]", i), "invalid header name %q", h))
		}
	}
	if c.Assertion.Lifetime.Std() < 30e9 {
		errs = append(errs, conf.Errorf("assertion.lifetime", "must be at least 30s"))
	}
	if len(c.Resources) == 0 && len(c.Tunnels) == 0 {
		errs = append(errs, conf.Errorf("resources", "no resources or tunnels: the gateway would deny everything"))
	}
	names := map[string]bool{}
	caNames := map[string]bool{}
	for _, ca := range c.Devices.CAs {
		caNames[ca.Name] = true
	}
	routes := map[string]string{}
	for i, r := range c.Resources {
		key := fmt.Sprintf("resources[%d]", i)
		if r.Name == "" {
			errs = append(errs, conf.Errorf(key+".name", "missing"))
		} else if names[r.Name] {
			errs = append(errs, conf.Errorf(key+".name", "duplicate resource name %q", r.Name))
		}
		names[r.Name] = true
		if len(r.Hosts) == 0 {
			errs = append(errs, conf.Errorf(key+".hosts", "missing (use [\"*\"] for any host)"))
		}
		for j, h := range r.Hosts {
			if err := validHostPattern(h); err != nil {
				errs = append(errs, conf.Errorf(fmt.Sprintf("%s.hosts[%d]", key, j), "%v", err))
			}
		}
		for j, p := range r.Paths {
			pk := fmt.Sprintf("%s.paths[%d]", key, j)
			if !strings.HasPrefix(p, "/") {
				errs = append(errs, conf.Errorf(pk, "must start with /"))
			}
			for _, h := range r.Hosts {
				rk := strings.ToLower(h) + " " + strings.TrimSuffix(p, "/")
				if other, dup := routes[rk]; dup {
					errs = append(errs, conf.Errorf(pk, "host %s path %s is already routed to %s", h, p, other))
				}
				routes[rk] = r.Name
			}
		}
		errs = append(errs, validateEdge(key, &r))
		if err := validUpstream(r.Upstream); err != nil {
			errs = append(errs, conf.Errorf(key+".upstream", "%v", err))
		}
		if r.Remediation != "" {
			if u, err := url.Parse(r.Remediation); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs = append(errs, conf.Errorf(key+".remediation", "want an absolute http(s) URL, got %q", r.Remediation))
			}
		}
		add(key+".policy", r.Policy.Validate())
		for j, ca := range r.Policy.Device.CAs {
			if !caNames[ca] {
				errs = append(errs, conf.Errorf(fmt.Sprintf("%s.policy.device.cas[%d]", key, j), "unknown device CA %q", ca))
			}
		}
		if login := r.Policy.Login; login != "" && login != "none" && !c.Identity.Has(login) {
			errs = append(errs, conf.Errorf(key+".policy.login", "unknown identity provider %q (configure it under identity, or use none)", login))
		}
	}
	errs = append(errs, c.validateTunnels(names, caNames))
	return errors.Join(errs...)
}

func validHostPattern(h string) error {
	if h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "*/: ") && net.ParseIP(strings.Trim(name, "[]")) == nil {
		return fmt.Errorf("invalid host %q (want a name, an IP, *.name or *)", h)
	}
	return nil
}

func validUpstream(s string) error {
	if s == "builtin:echo" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("want http://, https:// or h2c:// host:port, or builtin:echo; got %q", s)
	}
	switch u.Scheme {
	case "http", "https", "h2c":
	default:
		return fmt.Errorf("unsupported scheme %q (want http, https or h2c)", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("an upstream is scheme://host:port, without path, query or credentials; got %q", s)
	}
	return nil
}

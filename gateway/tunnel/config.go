package tunnel

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"portcullis/enforcement"
	"portcullis/internal/conf"
)

// Config is one entry of the `tunnels:` list: a tunnel resource. Its
// comments are the user documentation of its keys (docs/tunnels.md).
type Config struct {
	// Name identifies the tunnel resource in logs, metrics and decision
	// records. It must not be the name of an HTTP resource.
	Name string `yaml:"name"`
	// Hosts are the proxy host names this resource answers CONNECT for,
	// matched against the connection's TLS server name (SNI), or its
	// local IP address when the client sent none: exact names, IPs, or
	// one-label wildcards ("*.vpn.example.com").
	Hosts []string `yaml:"hosts"`
	// Protocols lists what the tunnel may carry. Only "tcp" (plain
	// CONNECT) is built; "udp" (CONNECT-UDP) and "ip" (CONNECT-IP) are
	// refused until they are. Default [tcp].
	Protocols []Protocol `yaml:"protocols"`
	// Destinations are where the tunnel may lead, each an address range
	// or a host name with ports: "10.0.0.0/8:22", "10.1.2.3:8000-8100",
	// "[2001:db8::/32]:443", "db.internal:5432", "*.corp.internal:*".
	// A destination given by IP is checked on the address; one given by
	// name allows that name, and every address it resolves to is still
	// checked against the built-in deny list.
	Destinations []string `yaml:"destinations"`
	// Allow lifts parts of the built-in deny list, which otherwise
	// refuses loopback, link-local and cloud-metadata addresses whatever
	// the destinations say. Unspecified and multicast addresses, and the
	// gateway's own listeners, are always refused.
	Allow AllowConfig `yaml:"allow"`
	// Timeouts bound a tunnel's life.
	Timeouts TimeoutsConfig `yaml:"timeouts"`
	// MaxPerUser is how many tunnels of this resource one user (or, for
	// a certificate without a user, one device) may have open at once.
	// Default 32; 0 means the default.
	MaxPerUser int `yaml:"max_per_user"`
	// Policy decides who and what may open a tunnel: the same keys as an
	// HTTP resource's policy. CEL sees request.method "CONNECT" and
	// request.host the target as the client asked for it.
	Policy enforcement.PolicyConfig `yaml:"policy"`
	// Remediation is where a denied user can fix their device; the
	// client prints it.
	Remediation string `yaml:"remediation"`
}

// AllowConfig lifts parts of the built-in destination deny list.
type AllowConfig struct {
	// Loopback allows 127.0.0.0/8 and ::1 (the gateway host itself).
	Loopback bool `yaml:"loopback"`
	// LinkLocal allows 169.254.0.0/16 and fe80::/10, except the metadata
	// addresses.
	LinkLocal bool `yaml:"link_local"`
	// Metadata allows the cloud instance-metadata addresses
	// (169.254.169.254, fd00:ec2::254), which hand out credentials.
	Metadata bool `yaml:"metadata"`
}

// TimeoutsConfig bounds a tunnel.
type TimeoutsConfig struct {
	// Dial is how long connecting to the destination may take (default
	// 10s).
	Dial conf.Duration `yaml:"dial"`
	// Idle closes a tunnel that carried no byte either way for this long
	// (default 15m).
	Idle conf.Duration `yaml:"idle"`
	// Max closes a tunnel this long after it opened, busy or not
	// (default 24h).
	Max conf.Duration `yaml:"max"`
}

// Protocol is what a tunnel carries.
type Protocol string

// The values of tunnels[].protocols.
const (
	ProtoTCP Protocol = "tcp"
	ProtoUDP Protocol = "udp"
	ProtoIP  Protocol = "ip"
)

// UnmarshalText implements [encoding.TextUnmarshaler]. It accepts the
// protocols not built yet, so that validation can say so at their line.
func (p *Protocol) UnmarshalText(b []byte) (err error) {
	*p, err = conf.Enum(b, ProtoTCP, ProtoUDP, ProtoIP)
	return err
}

// Defaults.
const (
	defaultMaxPerUser = 32
	defaultDial       = 10e9
	defaultIdle       = 15 * 60e9
	defaultMax        = 24 * 3600e9
)

// ApplyDefaults fills in what c leaves out.
func (c *Config) ApplyDefaults() {
	if len(c.Protocols) == 0 {
		c.Protocols = []Protocol{ProtoTCP}
	}
	if c.MaxPerUser == 0 {
		c.MaxPerUser = defaultMaxPerUser
	}
	if c.Timeouts.Dial == 0 {
		c.Timeouts.Dial = defaultDial
	}
	if c.Timeouts.Idle == 0 {
		c.Timeouts.Idle = defaultIdle
	}
	if c.Timeouts.Max == 0 {
		c.Timeouts.Max = defaultMax
	}
}

// Validate reports every problem in c, each keyed relative to the tunnel
// ("destinations[2]"). It does not compile the policy (see [Compile]) and
// does not check names against the rest of the configuration.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, conf.Errorf(key, format, args...)) }
	if c.Name == "" {
		add("name", "missing")
	}
	if len(c.Hosts) == 0 {
		add("hosts", "missing: list the proxy host names clients connect to")
	}
	for i, h := range c.Hosts {
		if err := validHostPattern(h); err != nil {
			add(fmt.Sprintf("hosts[%d]", i), "%v", err)
		}
	}
	for i, p := range c.Protocols {
		if p != ProtoTCP {
			add(fmt.Sprintf("protocols[%d]", i), "%q is not supported yet (only tcp: plain CONNECT); see docs/tunnels.md", p)
		}
	}
	if len(c.Destinations) == 0 {
		add("destinations", "missing: a tunnel with no destination would refuse everything")
	}
	for i, d := range c.Destinations {
		if _, err := parseRule(d); err != nil {
			add(fmt.Sprintf("destinations[%d]", i), "%v", err)
		}
	}
	if c.MaxPerUser < 0 {
		add("max_per_user", "must not be negative")
	}
	for key, d := range map[string]conf.Duration{"timeouts.dial": c.Timeouts.Dial, "timeouts.idle": c.Timeouts.Idle, "timeouts.max": c.Timeouts.Max} {
		if d < 0 {
			add(key, "must not be negative")
		}
	}
	if c.Remediation != "" {
		if u, err := url.Parse(c.Remediation); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("remediation", "want an absolute http(s) URL, got %q", c.Remediation)
		}
	}
	errs = append(errs, conf.AtKey("policy", c.Policy.Validate()))
	return errors.Join(errs...)
}

// validHostPattern accepts what HTTP resources accept as hosts, except
// "*": a tunnel endpoint answers for names it is given.
func validHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || h == "*" || strings.ContainsAny(name, "*/: ") && !isIPLiteral(name) {
		return fmt.Errorf("invalid host %q (want a name, an IP or *.name)", h)
	}
	return nil
}

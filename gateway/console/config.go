package console

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"portcullis/enforcement"
	"portcullis/internal/conf"
)

// DefaultSessionMaxAge is how long a console sign-in lasts by default.
const DefaultSessionMaxAge = 8 * time.Hour

// Config is the admin.console section of the configuration.
type Config struct {
	// Enabled turns the console on: at /console/ on the admin listener,
	// where operators sign in with the admin token (admin.token_file), and
	// on Host when it is set.
	Enabled bool `yaml:"enabled"`
	// SessionMaxAge is how long a sign-in lasts (default 8h, at most
	// 24h).
	SessionMaxAge conf.Duration `yaml:"session_max_age"`
	// SessionKeyFile holds the keys that seal console session cookies, in
	// the format of identity.session.key_file (one base64 32-byte key a
	// line; the first seals, every one opens). Give every replica the
	// same file, and sign-ins hold across replicas and restarts. Default:
	// a key made at start, so a sign-in ends with the process.
	SessionKeyFile conf.Path `yaml:"session_key_file"`
	// Host also serves the console on the gateway's HTTPS listeners, at
	// https://HOST/console/, to users who sign in through Login and are in
	// one of Groups. The gateway treats the host as a resource of its own,
	// named admin.console: routed, decided and recorded like any other.
	Host string `yaml:"host"`
	// Login is the identity provider operators sign in with on Host: an
	// OIDC provider's name, or saml:NAME. Required with Host.
	Login string `yaml:"login"`
	// Groups are the admin groups: a user in none of them is refused
	// (403, user.not_in_group). Required with Host.
	Groups []string `yaml:"groups"`
	// Policy adds checks to Host, written as a resource's policy: device
	// certificate and posture, user risk, MFA, a when expression. Its
	// login and user.groups come from Login and Groups and must not be
	// set here. Without Policy the console host asks for no device
	// certificate; with it, device.certificate defaults to required, as
	// for any resource.
	Policy *enforcement.PolicyConfig `yaml:"policy"`
}

// MaxAge returns the session lifetime, with its default applied.
func (c *Config) MaxAge() time.Duration {
	if c.SessionMaxAge <= 0 {
		return DefaultSessionMaxAge
	}
	return c.SessionMaxAge.Std()
}

// Validate reports every problem in c. Whether Login names a configured
// provider is for the caller to check.
func (c *Config) Validate() error {
	var errs []error
	if c.SessionMaxAge < 0 || c.SessionMaxAge.Std() > 24*time.Hour {
		errs = append(errs, conf.Errorf("session_max_age", "must be between 0 (the default, 8h) and 24h, got %s", c.SessionMaxAge))
	}
	if c.Host == "" {
		for key, set := range map[string]bool{"login": c.Login != "", "groups": len(c.Groups) > 0, "policy": c.Policy != nil} {
			if set {
				errs = append(errs, conf.Errorf(key, "has no effect without host"))
			}
		}
		return errors.Join(errs...)
	}
	if !c.Enabled {
		errs = append(errs, conf.Errorf("host", "needs enabled: true"))
	}
	if err := validHost(c.Host); err != nil {
		errs = append(errs, conf.Errorf("host", "%v", err))
	}
	switch {
	case c.Login == "":
		errs = append(errs, conf.Errorf("login", "missing: the console host needs an identity provider (a name under identity.oidc, or saml:NAME)"))
	case c.Login == enforcement.LoginNone:
		errs = append(errs, conf.Errorf("login", "must name an identity provider, not none"))
	}
	if len(c.Groups) == 0 {
		errs = append(errs, conf.Errorf("groups", "missing: list the admin groups whose users may use the console"))
	}
	for i, g := range c.Groups {
		if strings.TrimSpace(g) == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("groups[%d]", i), "empty group name"))
		}
	}
	if c.Policy != nil {
		if c.Policy.Login != "" {
			errs = append(errs, conf.Errorf("policy.login", "set admin.console.login instead"))
		}
		if len(c.Policy.User.Groups) > 0 {
			errs = append(errs, conf.Errorf("policy.user.groups", "set admin.console.groups instead"))
		}
	}
	if p, err := c.HostPolicy(); err == nil {
		errs = append(errs, conf.AtKey("policy", p.Validate()))
	}
	return errors.Join(errs...)
}

// HostPolicy returns the policy of the console host: Policy (or, without
// it, no device certificate) with Login and Groups.
func (c *Config) HostPolicy() (enforcement.PolicyConfig, error) {
	if c.Host == "" {
		return enforcement.PolicyConfig{}, errors.New("console: no host")
	}
	p := enforcement.PolicyConfig{Device: enforcement.DeviceConfig{Certificate: enforcement.CertOff}}
	if c.Policy != nil {
		p = *c.Policy
	}
	p.Login = c.Login
	p.User.Groups = c.Groups
	return p, nil
}

// validHost reports whether h is a host name or IP address, without a
// port, a wildcard or a path.
func validHost(h string) error {
	if net.ParseIP(strings.Trim(h, "[]")) != nil {
		return nil
	}
	if len(h) > 253 || strings.HasSuffix(h, ".") {
		return fmt.Errorf("invalid host %q (want a name or an IP address, without a port)", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Errorf("invalid host %q (want a name or an IP address, without a port)", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("invalid host %q (want a name or an IP address, without a port)", h)
			}
		}
	}
	return nil
}

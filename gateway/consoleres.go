package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"portcullis/enforcement"
	"portcullis/gateway/console"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
	"portcullis/internal/conf"
)

// consoleResource is the name of the built-in resource that serves the
// admin console on admin.console.host. No configured resource may take
// it.
const consoleResource = "admin.console"

// localUpstream serves an allowed request in the process instead of
// proxying it, with the input it was decided on.
type localUpstream func(w http.ResponseWriter, r *http.Request, in *enforcement.Input)

// consoleResourceConfig is the resource the console host is: every path
// of admin.console.host, under the console's policy (its login, its
// admin groups, and any further checks it sets). It is false when the
// console has no host.
func consoleResourceConfig(cfg *Config) (*ResourceConfig, bool) {
	cc := &cfg.Admin.Console
	if !cc.Enabled || cc.Host == "" {
		return nil, false
	}
	pol, err := cc.HostPolicy()
	if err != nil {
		return nil, false
	}
	return &ResourceConfig{Name: consoleResource, Hosts: []string{cc.Host}, Paths: []string{"/"},
		Upstream: "builtin:console", Policy: pol}, true
}

// buildConsoleResource compiles the console host's resource into s, so
// that a request to it is routed, gathered, decided and recorded as any
// other, and only an allowed one reaches the console, with its user as
// the operator.
func (g *Gateway) buildConsoleResource(cfg *Config, s *snapshot) error {
	rc, ok := consoleResourceConfig(cfg)
	if !ok {
		return nil
	}
	if g.console == nil {
		return conf.Errorf("admin.console.host", "the console was off when the gateway started; restart to serve it")
	}
	pol, err := enforcement.Compile(rc.Policy, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()})
	if err != nil {
		return conf.AtKey("admin.console.policy", err)
	}
	h := g.console.HostHandler()
	s.resources = append(s.resources, &resource{cfg: rc, name: rc.Name, policy: pol,
		local: func(w http.ResponseWriter, r *http.Request, in *enforcement.Input) {
			var op console.Operator
			if sub := in.Subject; sub != nil {
				op = console.Operator{User: sub.UserID, IdP: sub.IdP, Session: sub.SessionID}
			}
			h.ServeHTTP(w, r.WithContext(console.WithOperator(r.Context(), op)))
		}})
	return nil
}

// addConsoleHost adds the console host to the hosts its login provider
// may return to after a sign-in.
func addConsoleHost(cfg *Config, hosts map[string][]string) {
	if rc, ok := consoleResourceConfig(cfg); ok {
		hosts[rc.Policy.Login] = append(hosts[rc.Policy.Login], rc.Hosts...)
	}
}

// consoleLogout is where signing out on the console host sends the
// browser: the gateway's logout for the console's provider, which asks
// for confirmation and ends the login.
func consoleLogout(cfg *Config) string {
	login := cfg.Admin.Console.Login
	if name, ok := strings.CutPrefix(login, "saml:"); ok {
		return saml.PathPrefix + name + "/logout"
	}
	return oidc.LogoutPath
}

// validateConsole checks admin.console against the rest of the
// configuration: where it is served, that its provider exists, and that
// no resource takes its host or its name.
func (c *Config) validateConsole() error {
	cc := &c.Admin.Console
	var errs []error
	if cc.Enabled && c.Admin.Listen == "off" && cc.Host == "" {
		errs = append(errs, conf.Errorf("admin.console.enabled", "the console is served on the admin listener, which is off, and no admin.console.host is set"))
	}
	if cc.Host != "" && cc.Login != "" && cc.Login != enforcement.LoginNone && !c.Identity.Has(cc.Login) {
		errs = append(errs, conf.Errorf("admin.console.login", "unknown identity provider %q (configure it under identity)", cc.Login))
	}
	for i, r := range c.Resources {
		if r.Name == consoleResource {
			errs = append(errs, conf.Errorf(fmt.Sprintf("resources[%d].name", i), "%q is the admin console's own resource name", r.Name))
		}
		if cc.Host == "" {
			continue
		}
		for j, h := range r.Hosts {
			if strings.EqualFold(strings.TrimSuffix(h, "."), cc.Host) {
				errs = append(errs, conf.Errorf(fmt.Sprintf("resources[%d].hosts[%d]", i, j), "host %s is the admin console's (admin.console.host)", h))
			}
		}
	}
	return errors.Join(errs...)
}

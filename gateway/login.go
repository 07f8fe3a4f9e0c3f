package gateway

import (
	"context"
	"net"
	"strconv"
	"strings"

	"portcullis/identity"
)

// IdentityConfig configures the identity providers users log in with
// (the `identity:` section); see [identity.Config].
type IdentityConfig = identity.Config

// buildLogins builds the identity providers of cfg (identity.New) into
// s.logins, and mounts their endpoints (start, callbacks, handoff,
// logout, SAML metadata) in s.system.
// ctx bounds the first fetch of SAML metadata URLs.
func (g *Gateway) buildLogins(ctx context.Context, cfg *Config, s *snapshot) error {
	hosts := map[string][]string{}
	for i := range cfg.Resources {
		rc := &cfg.Resources[i]
		hosts[rc.Policy.Login] = append(hosts[rc.Policy.Login], rc.Hosts...)
	}
	addConsoleHost(cfg, hosts)
	set, err := identity.New(ctx, cfg.Identity, identity.Options{
		Logger:   g.log,
		Store:    g.store,
		State:    g.ident,
		StateDir: cfg.State.Dir.String(),
		Hosts:    hosts,
		Ports:    g.servesPort,
		Replay:   g.replay(),
	})
	if err != nil {
		return err
	}
	s.logins = set
	for path, h := range set.Handlers() {
		s.system[path] = h
	}
	return nil
}

// servesPort reports whether port is one a client reaches the gateway's
// resources on: a bound HTTPS or HTTP/3 listener, or one configured. A
// login may return only to those ports.
func (g *Gateway) servesPort(port int) bool {
	p := strconv.Itoa(port)
	for name, addr := range g.listenerAddrs() {
		if strings.HasPrefix(name, "https") || strings.HasPrefix(name, "h3_") {
			if _, ap, err := net.SplitHostPort(addr); err == nil && ap == p {
				return true
			}
		}
	}
	if s := g.cur.Load(); s != nil {
		for _, l := range s.cfg.Listen {
			if _, ap, err := net.SplitHostPort(l.Address); err == nil && !l.Redirect && ap == p {
				return true
			}
		}
	}
	return false
}

// challenge is what res asks of a login, for identity.Authenticator's
// Challenge.
func (res *resource) challenge(requestID string) identity.Challenge {
	u := res.cfg.Policy.User
	return identity.Challenge{ACR: u.ACR, MFA: u.MFA, MaxAuthAge: u.MaxAuthAge.Std(), RequestID: requestID, Resource: res.name}
}

package gateway

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"

	"portcullis/identity"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
)

// IdentityConfig configures the identity providers users log in with
// (the `identity:` section); see [identity.Config].
type IdentityConfig = identity.Config

// buildLogins builds the identity providers of cfg (identity.New) into
// s.logins, and mounts their endpoints (start, callbacks, handoff,
// logout, SAML metadata) in s.system.
func (g *Gateway) buildLogins(cfg *Config, s *snapshot) error {
	hosts := map[string][]string{}
	for i := range cfg.Resources {
		rc := &cfg.Resources[i]
		hosts[rc.Policy.Login] = append(hosts[rc.Policy.Login], rc.Hosts...)
	}
	set, err := identity.New(context.Background(), identityPaths(cfg), identity.Options{
		Logger:   g.log,
		Store:    g.store,
		State:    g.ident,
		StateDir: cfg.Path(cfg.State.Dir),
		Hosts:    hosts,
		Ports:    g.servesPort,
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

// identityPaths returns cfg's identity section with its relative paths
// resolved against the configuration file; cfg is not changed.
func identityPaths(cfg *Config) identity.Config {
	ic := cfg.Identity
	ic.Session.KeyFile = cfg.Path(ic.Session.KeyFile)
	ic.OIDC = slices.Clone(ic.OIDC)
	for i := range ic.OIDC {
		ic.OIDC[i] = resolveOIDC(cfg, ic.OIDC[i])
	}
	ic.SAML = slices.Clone(ic.SAML)
	for i := range ic.SAML {
		ic.SAML[i] = resolveSAML(cfg, ic.SAML[i])
	}
	return ic
}

func resolveOIDC(cfg *Config, c oidc.ProviderConfig) oidc.ProviderConfig {
	c.ClientSecretFile = cfg.Path(c.ClientSecretFile)
	return c
}

func resolveSAML(cfg *Config, c saml.Config) saml.Config {
	c.IdPMetadataFile, c.KeyFile, c.CertFile = cfg.Path(c.IdPMetadataFile), cfg.Path(c.KeyFile), cfg.Path(c.CertFile)
	return c
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

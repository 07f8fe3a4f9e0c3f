package gateway

import (
	"errors"
	"net/http"
	"path/filepath"

	"portcullis/enforcement"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/internal/deny"
)

// IdentityConfig configures the identity providers users log in with
// (the `identity:` section). Resources name one in policy.login.
type IdentityConfig struct {
	// Session configures the session cookie a login yields.
	Session session.Config `yaml:"session"`
	// OIDC lists the OpenID Connect providers.
	OIDC []oidc.ProviderConfig `yaml:"oidc"`
	// SAML lists the SAML 2.0 identity providers; resources name one as
	// "saml:NAME".
	SAML []saml.Config `yaml:"saml"`
}

// Validate reports every problem in c.
func (c *IdentityConfig) Validate() error {
	return errors.Join(conf.AtKey("session", c.Session.Validate()), conf.AtKey("oidc", oidc.ValidateAll(c.OIDC)),
		conf.AtKey("saml", saml.ValidateAll(c.SAML)))
}

// Has reports whether login names a configured provider.
func (c *IdentityConfig) Has(login string) bool {
	for i := range c.OIDC {
		if c.OIDC[i].Name == login {
			return true
		}
	}
	for i := range c.SAML {
		if "saml:"+c.SAML[i].Name == login {
			return true
		}
	}
	return false
}

// authenticator establishes who the user of a request is, for resources
// whose policy.login names it, and sends users who must log in (or log in
// again, more strongly) to their identity provider.
type authenticator interface {
	// Authenticate returns the subject r proves for res (a session
	// cookie, a bearer token), or nil when it proves none. It removes its
	// own credentials from r so they never reach the upstream.
	Authenticate(r *http.Request, res *resource) *enforcement.Subject
	// Challenge answers a request Decide sent to Login or StepUp: a
	// redirect to the provider for a browser, a 401 problem document for
	// an API client.
	Challenge(w http.ResponseWriter, r *http.Request, res *resource, d enforcement.Decision, requestID string)
}

// responseAuthenticator is an authenticator that can also write to the
// response before it is proxied: it re-issues a session cookie to push
// back its idle deadline. The handler should prefer it.
type responseAuthenticator interface {
	AuthenticateResponse(w http.ResponseWriter, r *http.Request, res *resource) *enforcement.Subject
}

// buildLogins compiles the identity providers of cfg into s.logins, and
// mounts their endpoints (callbacks, logout) in s.system.
func (g *Gateway) buildLogins(cfg *Config, s *snapshot) error {
	ic := cfg.Identity
	if err := g.buildSAMLLogins(ic.SAML, ic.Session, s); err != nil {
		return err
	}
	if len(ic.OIDC) == 0 {
		return nil
	}
	keyFile, create := cfg.Path(ic.Session.KeyFile), false
	if keyFile == "" {
		keyFile, create = filepath.Join(cfg.Path(cfg.State.Dir), "session.keys"), true
	}
	keys, err := session.LoadKeyFile(keyFile, create)
	if err != nil {
		return conf.AtKey("session.key_file", err)
	}
	provs := make([]oidc.ProviderConfig, len(ic.OIDC))
	hosts := map[string][]string{}
	for i, pc := range ic.OIDC {
		pc.ClientSecretFile = cfg.Path(pc.ClientSecretFile)
		provs[i] = pc
	}
	for i := range cfg.Resources {
		rc := &cfg.Resources[i]
		hosts[rc.Policy.Login] = append(hosts[rc.Policy.Login], rc.Hosts...)
	}
	m, err := oidc.New(provs, oidc.Options{
		Logger:      g.log.With("component", "oidc"),
		Store:       g.store,
		SessionKeys: keys,
		Session:     ic.Session,
		Hosts:       hosts,
	})
	if err != nil {
		return conf.AtKey("oidc", err)
	}
	for path, h := range m.Handlers() {
		s.system[path] = h
	}
	for _, pc := range ic.OIDC {
		s.logins[pc.Name] = &oidcLogin{p: m.Provider(pc.Name)}
	}
	return nil
}

// oidcLogin adapts an OIDC provider to the gateway's authenticator.
type oidcLogin struct{ p *oidc.Provider }

func (l *oidcLogin) Authenticate(r *http.Request, res *resource) *enforcement.Subject {
	return l.p.Authenticate(nil, r)
}

func (l *oidcLogin) AuthenticateResponse(w http.ResponseWriter, r *http.Request, res *resource) *enforcement.Subject {
	return l.p.Authenticate(w, r)
}

func (l *oidcLogin) Challenge(w http.ResponseWriter, r *http.Request, res *resource, d enforcement.Decision, requestID string) {
	u := res.cfg.Policy.User
	l.p.Challenge(w, r, d, oidc.Requirements{ACR: u.ACR, MFA: u.MFA, MaxAuthAge: u.MaxAuthAge.Std()},
		deny.Info{RequestID: requestID, Resource: res.name})
}

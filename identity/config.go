package identity

import (
	"errors"

	"portcullis/identity/oidc"
	"portcullis/identity/saml"
	"portcullis/identity/session"
	"portcullis/internal/conf"
)

// Config configures the identity providers users log in with (the
// `identity:` section). Resources name one in policy.login: an OIDC
// provider by its name, a SAML IdP as "saml:NAME".
type Config struct {
	// Session configures the session cookie a login yields.
	Session session.Config `yaml:"session"`
	// OIDC lists the OpenID Connect providers.
	OIDC []oidc.ProviderConfig `yaml:"oidc"`
	// SAML lists the SAML 2.0 identity providers.
	SAML []saml.Config `yaml:"saml"`
}

// Validate reports every problem in c.
func (c *Config) Validate() error {
	return errors.Join(conf.AtKey("session", c.Session.Validate()), conf.AtKey("oidc", oidc.ValidateAll(c.OIDC)),
		conf.AtKey("saml", saml.ValidateAll(c.SAML)))
}

// Has reports whether login names a configured provider.
func (c *Config) Has(login string) bool {
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

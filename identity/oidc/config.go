package oidc

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"time"

	"portcullis/internal/conf"
)

// Defaults for [ProviderConfig].
const (
	DefaultClockSkew = time.Minute
	DefaultTimeout   = 10 * time.Second
)

// DefaultAlgorithms are the signature algorithms accepted when a
// configuration names none.
var DefaultAlgorithms = []string{"RS256", "ES256", "PS256"}

// supportedAlgorithms are the asymmetric algorithms that may be
// configured: never "none", never an HMAC.
var supportedAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// ProviderConfig is one entry of `identity.oidc:`.
type ProviderConfig struct {
	// Name identifies the provider; resources name it in policy.login.
	// Lower-case letters, digits, - and _.
	Name string `yaml:"name"`
	// Issuer is the provider's issuer URL, exactly as its discovery
	// document spells it (a trailing slash matters).
	Issuer string `yaml:"issuer"`
	// ClientID is the client registered at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret.
	ClientSecretFile conf.Path `yaml:"client_secret_file"`
	// Scopes requested. Default: openid, email, profile. openid is always
	// added.
	Scopes []string `yaml:"scopes"`
	// RedirectURL is the one callback URL registered at the provider, on
	// a host the gateway serves, e.g.
	// https://auth.example.com/.portcullis/oidc/callback. Logins for
	// every host return through it.
	RedirectURL string `yaml:"redirect_url"`
	// Claims says which ID token claims hold the user's identity.
	Claims ClaimsConfig `yaml:"claims"`
	// UseUserinfo also reads the userinfo endpoint at login, for
	// providers that leave claims (often groups) out of the ID token.
	UseUserinfo bool `yaml:"use_userinfo"`
	// Algorithms are the accepted ID token signature algorithms.
	// Default RS256, ES256, PS256.
	Algorithms []string `yaml:"algorithms"`
	// MFAACRValues are the acr_values requested when a resource needs
	// MFA (policy.user.mfa) and names no acr of its own. Default none:
	// the step-up only forces a new login.
	MFAACRValues []string `yaml:"mfa_acr_values"`
	// PostLogoutRedirectURL is sent to the provider's end_session_endpoint
	// (it must be registered there). Default none.
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// ClockSkew is the tolerance for the provider's clock. Default 1m.
	ClockSkew conf.Duration `yaml:"clock_skew"`
	// Timeout bounds each request to the provider. Default 10s.
	Timeout conf.Duration `yaml:"timeout"`
	// Bearer, when set, accepts `Authorization: Bearer` JWT access tokens
	// from this provider's issuer.
	Bearer *BearerConfig `yaml:"bearer"`
}

// ClaimsConfig names the claims identity comes from.
type ClaimsConfig struct {
	// User is the claim that names the user (lower-cased). Default
	// "email"; when it is email, an email_verified of false is refused.
	User string `yaml:"user"`
	// Email is the e-mail claim. Default "email".
	Email string `yaml:"email"`
	// Groups is the groups claim (a list of strings, or one string).
	// Default "groups".
	Groups string `yaml:"groups"`
}

// BearerConfig accepts JWT access tokens for APIs.
type BearerConfig struct {
	// Audience the token's aud must contain.
	Audience string `yaml:"audience"`
	// Algorithms accepted. Default RS256, ES256, PS256.
	Algorithms []string `yaml:"algorithms"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ApplyDefaults fills the defaults in.
func (c *ProviderConfig) ApplyDefaults() {
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "email", "profile"}
	} else if !slices.Contains(c.Scopes, "openid") {
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	if c.Claims.User == "" {
		c.Claims.User = "email"
	}
	if c.Claims.Email == "" {
		c.Claims.Email = "email"
	}
	if c.Claims.Groups == "" {
		c.Claims.Groups = "groups"
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	if c.Bearer != nil && len(c.Bearer.Algorithms) == 0 {
		c.Bearer.Algorithms = DefaultAlgorithms
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = conf.Duration(DefaultClockSkew)
	}
	if c.Timeout == 0 {
		c.Timeout = conf.Duration(DefaultTimeout)
	}
}

// Validate reports every problem in c. Call ApplyDefaults first.
func (c *ProviderConfig) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, conf.Errorf("name", "must be 1-32 lower-case letters, digits, - or _"))
	}
	if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname()))) {
		errs = append(errs, conf.Errorf("issuer", "must be an https URL (http only on a loopback address)"))
	}
	if c.ClientID == "" {
		errs = append(errs, conf.Errorf("client_id", "is required"))
	}
	if c.ClientSecretFile == "" {
		errs = append(errs, conf.Errorf("client_secret_file", "is required"))
	}
	if u, err := url.Parse(c.RedirectURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || len(u.Path) < 2 || u.Path[0] != '/' {
		errs = append(errs, conf.Errorf("redirect_url", "must be an https URL with a path and no query, on a host the gateway serves"))
	} else if !reservedPath(u.Path) {
		errs = append(errs, conf.Errorf("redirect_url", "path must be under /.portcullis/ (e.g. /.portcullis/oidc/callback)"))
	}
	if c.PostLogoutRedirectURL != "" {
		if u, err := url.Parse(c.PostLogoutRedirectURL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, conf.Errorf("post_logout_redirect_url", "must be an https URL"))
		}
	}
	errs = append(errs, checkAlgs("algorithms", c.Algorithms)...)
	if c.Bearer != nil {
		if c.Bearer.Audience == "" {
			errs = append(errs, conf.Errorf("bearer.audience", "is required"))
		}
		errs = append(errs, checkAlgs("bearer.algorithms", c.Bearer.Algorithms)...)
	}
	if c.ClockSkew < 0 || c.ClockSkew.Std() > 5*time.Minute {
		errs = append(errs, conf.Errorf("clock_skew", "must be between 0 and 5m"))
	}
	if c.Timeout < 0 {
		errs = append(errs, conf.Errorf("timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}

func checkAlgs(key string, algs []string) []error {
	var errs []error
	for i, a := range algs {
		if !slices.Contains(supportedAlgorithms, a) {
			errs = append(errs, conf.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q is not an accepted algorithm (one of %v)", a, supportedAlgorithms))
		}
	}
	return errs
}

func reservedPath(p string) bool {
	return len(p) > len(Prefix) && p[:len(Prefix)] == Prefix
}

// ValidateAll validates a list of providers, including that names are
// unique.
func ValidateAll(cs []ProviderConfig) error {
	var errs []error
	seen := map[string]bool{}
	for i := range cs {
		c := cs[i]
		c.ApplyDefaults()
		key := fmt.Sprintf("[%d]", i)
		if err := c.Validate(); err != nil {
			errs = append(errs, conf.AtKey(key, err))
		}
		if seen[c.Name] {
			errs = append(errs, conf.Errorf(key+".name", "%q is configured twice", c.Name))
		}
		seen[c.Name] = true
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

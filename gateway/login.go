package gateway

import (
	"net/http"

	"portcullis/enforcement"
)

// IdentityConfig configures the identity providers users log in with
// (the `identity:` section). Resources name one in policy.login.
type IdentityConfig struct{}

// Validate reports every problem in c.
func (c *IdentityConfig) Validate() error { return nil }

// Has reports whether login names a configured provider.
func (c *IdentityConfig) Has(login string) bool { return false }

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

// buildLogins compiles the identity providers of cfg into s.logins, and
// mounts their endpoints (callbacks, logout) in s.system.
func (g *Gateway) buildLogins(cfg *Config, s *snapshot) error {
	return nil
}

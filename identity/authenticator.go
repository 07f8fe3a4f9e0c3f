package identity

import (
	"net/http"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
)

// Authenticator establishes who the user of a request is, for the
// resources whose policy.login names it, and sends users who must log in
// (or log in again, more strongly) to their identity provider. An OIDC
// provider and a SAML service provider are both one. Implementations are
// safe for concurrent use.
type Authenticator interface {
	// Authenticate returns the subject r proves (a session cookie, a
	// bearer token), or nil when it proves none: a missing, tampered,
	// expired or revoked credential means a new login. It removes the
	// gateway's credentials from r so they never reach the upstream.
	// When w is not nil, it may re-issue the session cookie to push back
	// its idle deadline.
	Authenticate(w http.ResponseWriter, r *http.Request) *enforcement.Subject
	// Challenge answers a request Decide sent to Login or StepUp: a
	// redirect to the provider for a browser, a 401 problem document for
	// an API client.
	Challenge(w http.ResponseWriter, r *http.Request, d enforcement.Decision, c Challenge)
}

// Challenge is what a resource asks of a login (acr, MFA, maximum
// authentication age), with the request id and resource name the answer
// page shows.
type Challenge = flow.Challenge

var (
	_ Authenticator = (*oidc.Provider)(nil)
	_ Authenticator = (*saml.SP)(nil)
)

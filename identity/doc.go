// Package identity builds the identity providers users log in with (the
// `identity:` section): OpenID Connect relying parties (identity/oidc)
// and SAML service providers (identity/saml), with the session cookies
// of identity/session. The gateway calls [New] once per configuration
// and asks the result for the [Authenticator] a resource's policy.login
// names, and for the endpoints to mount under /.portcullis/.
//
// It imports enforcement (the Subject) and internal packages, never the
// gateway.
package identity

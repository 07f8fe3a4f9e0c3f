// Package flow holds the parts of a browser login that OIDC and SAML
// share: the return-URL rule and the host allow-list behind it, the
// one-time handoff that carries a finished login to another host, the
// logout confirmation, and the challenge a resource makes.
//
// It lives under identity/internal so that identity/oidc and
// identity/saml import it, and nothing outside identity does.
package flow

// Package oidc logs users in with OpenID Connect providers and checks
// bearer tokens from them.
//
// A [Manager] holds one relying party ([Provider]) per configured provider
// and the endpoints they share under /.portcullis/: the login start, the
// callback (the authorization code flow with PKCE S256, state bound to the
// browser by a sealed cookie, nonce), the one-time code that hands a login
// to another host, logout (RP-initiated when the provider supports it) and
// Back-Channel Logout 1.0.
//
// ID tokens are verified by go-oidc (signature, issuer, audience, expiry)
// and then by this package for what go-oidc leaves out: nonce, azp, iat,
// auth_time and acr. Signing keys come from a key set that refetches the
// provider's JWKS at most once per [RefetchInterval] for an unknown key id,
// never for a bad signature. A login becomes a session cookie (package
// session); tokens are not kept.
package oidc

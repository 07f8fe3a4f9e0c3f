// Package saml logs users in through SAML 2.0 identity providers: it is a
// service provider (SP) built on github.com/crewjam/saml, hardened where
// that library is lax.
//
// One [SP] serves one configured IdP under /.portcullis/saml/NAME/:
// metadata (the SP's own), login (SP-initiated, HTTP-Redirect binding,
// signed AuthnRequest), acs (HTTP-POST binding) and slo (logout both
// ways). A verified assertion becomes an [enforcement.Subject] held in a
// sealed session cookie (package session).
//
// On top of the library's checks, the ACS requires: exactly one assertion;
// the signature where the configuration asks for it (assertion, response
// or either); a non-empty AudienceRestriction naming us; exactly one
// bearer SubjectConfirmation whose Recipient is our ACS; an InResponseTo
// naming a request this browser started (tracked server side and bound
// to a cookie), or none when IdP-initiated login is allowed; validity
// windows under our own bounded clock skew; a NameID in the SAML
// assertion namespace with no comments; and an assertion id never seen
// before (a persisted replay cache). Library panics are recovered and
// answered as rejections. Every rejection has a reason code (see
// [Reason]), a log line and a deny page; none is a 500.
package saml

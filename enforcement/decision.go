package enforcement

import (
	"time"

	"portcullis/certs"
	"portcullis/posture"
)

// Verdict is what the gateway does with a request. The zero value denies,
// so a forgotten field fails closed.
type Verdict uint8

const (
	Deny Verdict = iota // zero value
	Allow
	Login     // authenticate first (401 for an API client)
	StepUp    // re-authenticate more strongly or more recently
	Remediate // denied, with a way to fix it (the resource's remediation URL)
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Login:
		return "login"
	case StepUp:
		return "step_up"
	case Remediate:
		return "remediate"
	}
	return "deny"
}

// Reason is a stable, machine-readable code for a decision. Released
// values never change: SIEM queries and deny pages depend on them.
type Reason string

// Subject is an authenticated user.
type Subject struct {
	UserID    string // lower-cased
	Email     string
	Groups    []string
	IdP       string // the provider that authenticated it, or "device-certificate"
	AuthTime  time.Time
	AMR       []string
	ACR       string
	SessionID string
	// IdPSession and SubjectKey are further keys a revocation may be
	// recorded under: the identity provider's session id (OIDC sid) and
	// the provider-qualified subject (iss and sub), as back-channel logout
	// names them. Empty when the provider gave none.
	IdPSession string
	SubjectKey string
}

// Request is what Decide may know of the request itself.
type Request struct {
	Method   string
	Host     string
	Path     string
	Protocol string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	RemoteIP string
}

// CertStatus is what became of the client certificate of a request's
// connection. The zero value means none was presented; a certificate that
// was presented and accepted comes with [Input.Device].
type CertStatus uint8

const (
	CertNone         CertStatus = iota // no certificate presented
	CertValid                          // verified; Input.Device says whose
	CertInvalid                        // presented, not acceptable (chain, profile, identity)
	CertRevoked                        // revoked by a CRL or an OCSP answer
	CertUnverifiable                   // revocation status unavailable (OCSP hard-fail, stale CRL)
)

// Revocation is the set of revocations that cover a request's credentials,
// as [Gather] found them in the store.
type Revocation uint8

const (
	// RevokedSession: the subject's session id, or its identity
	// provider's session, was revoked.
	RevokedSession Revocation = 1 << iota
	// RevokedUser: the user's sessions authenticated at or before a time
	// were revoked (Universal Logout, CAEP session-revoked, RISC
	// account-disabled, the admin API), and this one was.
	RevokedUser
	// RevokedDevice: the device's certificates issued at or before a time
	// were revoked; a certificate issued later is a new enrolment.
	RevokedDevice
)

// Input is everything Decide needs, gathered beforehand (by [Gather], for
// the state parts). Nil pointers mean absent: no certificate, no posture
// record, no login, no risk record. Decide never modifies it.
type Input struct {
	Now     time.Time
	Request Request
	// Cert is the status of the connection's client certificate; Device
	// is its identity when Cert is CertValid, and nil otherwise.
	Cert    CertStatus
	Device  *certs.DeviceIdentity
	Posture *posture.Device
	Subject *Subject
	Risk    *posture.UserRisk
	// Revoked lists the revocations covering Device and Subject.
	Revoked Revocation
}

// Decision is the outcome of [Decide].
type Decision struct {
	Verdict Verdict
	Reason  Reason
	// Rule names the policy key that decided, e.g. "policy.device.compliant".
	Rule string
}

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
}

// Request is what Decide may know of the request itself.
type Request struct {
	Method   string
	Host     string
	Path     string
	Protocol string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	RemoteIP string
}

// Input is everything Decide needs, gathered beforehand. Nil pointers mean
// absent: no certificate, no posture record, no login, no risk record.
// Decide never modifies it.
type Input struct {
	Now     time.Time
	Request Request
	Device  *certs.DeviceIdentity
	Posture *posture.Device
	Subject *Subject
	Risk    *posture.UserRisk
}

// Decision is the outcome of [Decide].
type Decision struct {
	Verdict Verdict
	Reason  Reason
	// Rule names the policy key that decided, e.g. "policy.device.compliant".
	Rule string
}

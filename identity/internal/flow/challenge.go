package flow

import "time"

// Challenge is what a resource asks of a login when Decide answered Login
// or StepUp, with what the answer page shows.
type Challenge struct {
	// ACR lists the accepted authentication context classes
	// (policy.user.acr).
	ACR []string
	// MFA asks for multi-factor authentication (policy.user.mfa).
	MFA bool
	// MaxAuthAge is how old the authentication may be
	// (policy.user.max_auth_age); zero: any.
	MaxAuthAge time.Duration
	// RequestID and Resource are shown on the answer page.
	RequestID, Resource string
}

package saml

import (
	"errors"
	"fmt"
)

// Reason is the stable code of a rejected SAML message, logged and shown
// on the deny page. Released values never change.
type Reason string

// Rejection reasons.
const (
	ReasonMalformed           Reason = "saml.malformed"
	ReasonTooLarge            Reason = "saml.too_large"
	ReasonSignatureInvalid    Reason = "saml.signature_invalid"
	ReasonSignatureMissing    Reason = "saml.signature_missing"
	ReasonReplayed            Reason = "saml.replayed"
	ReasonAudienceMismatch    Reason = "saml.audience_mismatch"
	ReasonExpired             Reason = "saml.expired"
	ReasonNotYetValid         Reason = "saml.not_yet_valid"
	ReasonNotRequested        Reason = "saml.not_requested"
	ReasonDestinationMismatch Reason = "saml.destination_mismatch"
	ReasonRecipientMismatch   Reason = "saml.recipient_mismatch"
	ReasonIssuerMismatch      Reason = "saml.issuer_mismatch"
	ReasonSubjectInvalid      Reason = "saml.subject_invalid"
	ReasonStatus              Reason = "saml.status_not_success"
	ReasonIdPUnavailable      Reason = "saml.idp_unavailable"
	ReasonInternal            Reason = "saml.internal_error"
	ReasonBadReturn           Reason = "saml.return_url_invalid"
)

// Error is a rejected SAML message: a reason code, and the detail for
// the log (never shown to the user: it may quote the message).
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func reject(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason code of err, ReasonInternal if it has none.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonInternal
}

// message is what the deny page says for each reason.
func (r Reason) message() string {
	switch r {
	case ReasonReplayed:
		return "This sign-in response was already used. Start again from the application."
	case ReasonExpired, ReasonNotYetValid:
		return "The sign-in response is outside its validity period. Start again, and check that clocks are set correctly."
	case ReasonNotRequested:
		return "This sign-in response does not answer a sign-in started from this browser. Start again from the application."
	case ReasonIdPUnavailable:
		return "The identity provider's metadata is not available. Try again later."
	case ReasonBadReturn:
		return "The address to return to after sign-in is not allowed."
	case ReasonStatus:
		return "The identity provider did not sign you in."
	case ReasonTooLarge:
		return "The sign-in response is too large."
	}
	return "The sign-in response from the identity provider was refused."
}

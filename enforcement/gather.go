package enforcement

import (
	"time"

	"portcullis/posture"
)

// State is where the gateway's fresh knowledge of devices and users comes
// from: posture, risk and revocations. The posture store implements it;
// `explain` implements it from flags.
type State interface {
	Device(posture.DeviceKey) *posture.Device
	Risk(user string) *posture.UserRisk
	DeviceRevokedBefore(posture.DeviceKey) time.Time
	UserRevocations
}

// UserRevocations is the part of [State] that says which sessions and
// users were revoked. Both methods must be cheap and must not allocate:
// they run on every request.
type UserRevocations interface {
	SessionRevoked(sessionID string) bool
	UserRevokedBefore(user string) time.Time
}

// Gather completes in from st for in's device and subject: their posture,
// risk and revocations. The request handler, the re-evaluator, tunnels and
// `explain` all call it, then [Decide]: one rule for what a revocation
// covers, wherever a decision is made. It does not allocate.
func Gather(st State, in *Input) {
	in.Posture, in.Risk, in.Revoked = nil, nil, 0
	if d := in.Device; d != nil {
		key := posture.DeviceKey{CA: d.CA, ID: d.DeviceID}
		in.Posture = st.Device(key)
		if RevokedBy(st.DeviceRevokedBefore(key), d.NotBefore) {
			in.Revoked |= RevokedDevice
		}
	}
	if s := in.Subject; s != nil {
		in.Risk = st.Risk(s.UserID)
		in.Revoked |= SubjectRevocations(st, s)
	}
}

// SubjectRevocations returns the revocations in st that cover s: its
// session id or its identity provider's session revoked
// ([RevokedSession]), or its user, under its id or its provider-qualified
// subject, revoked at or after it authenticated ([RevokedUser]). It is
// the one rule for what revokes a sign-in: [Gather] uses it for every
// decision, and the session codec to refuse a revoked cookie.
func SubjectRevocations(st UserRevocations, s *Subject) Revocation {
	var r Revocation
	if s.SessionID != "" && st.SessionRevoked(s.SessionID) || s.IdPSession != "" && st.SessionRevoked(s.IdPSession) {
		r |= RevokedSession
	}
	if RevokedBy(st.UserRevokedBefore(s.UserID), s.AuthTime) ||
		s.SubjectKey != "" && RevokedBy(st.UserRevokedBefore(s.SubjectKey), s.AuthTime) {
		r |= RevokedUser
	}
	return r
}

// RevokedBy reports whether a revocation of everything established at or
// before `before` covers a credential established at `at` (a sign-in's
// auth time, a certificate's NotBefore). A zero before is no revocation;
// a zero at is covered by any revocation (fail closed).
func RevokedBy(before, at time.Time) bool {
	return !before.IsZero() && !at.After(before)
}

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
	SessionRevoked(sessionID string) bool
	UserRevokedBefore(user string) time.Time
	DeviceRevokedBefore(posture.DeviceKey) time.Time
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
		if s.SessionID != "" && st.SessionRevoked(s.SessionID) || s.IdPSession != "" && st.SessionRevoked(s.IdPSession) {
			in.Revoked |= RevokedSession
		}
		if RevokedBy(st.UserRevokedBefore(s.UserID), s.AuthTime) ||
			s.SubjectKey != "" && RevokedBy(st.UserRevokedBefore(s.SubjectKey), s.AuthTime) {
			in.Revoked |= RevokedUser
		}
	}
}

// RevokedBy reports whether a revocation of everything established at or
// before `before` covers a credential established at `at` (a sign-in's
// auth time, a certificate's NotBefore). A zero before is no revocation;
// a zero at is covered by any revocation (fail closed).
func RevokedBy(before, at time.Time) bool {
	return !before.IsZero() && !at.After(before)
}

package certs

import "time"

// A DeviceIdentity is what a verified device certificate says: which device
// CA vouched for it, the device id (together the posture key), and the user
// named in its SAN, if any. The user is an assertion to match against a
// login, not an authentication on its own.
//
// A DeviceIdentity is immutable once returned; it may be shared between
// connections that present the same certificate.
type DeviceIdentity struct {
	CA       string // the configured device CA's name
	DeviceID string
	User     string // from the UPN or email SAN, lower-cased; may be empty

	Serial      string // hex
	Issuer      string
	Subject     string
	Fingerprint string // hex SHA-256 of the leaf certificate
	NotBefore   time.Time
	NotAfter    time.Time
}

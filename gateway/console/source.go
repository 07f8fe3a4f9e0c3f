package console

import (
	"context"
	"time"

	"portcullis/gateway/audit"
	"portcullis/posture"
	"portcullis/posture/feeds"
)

// Store is what the console reads from the posture store and the one
// write it makes, a revocation. [*posture.DB] implements it.
type Store interface {
	Device(posture.DeviceKey) *posture.Device
	RangeDevices(func(*posture.Device) bool)
	Risk(user string) *posture.UserRisk
	RangeRisks(func(*posture.UserRisk) bool)
	UserRevocation(user string) *posture.Revocation
	DeviceRevocation(posture.DeviceKey) *posture.Revocation
	RangeRevocations(func(*posture.Revocation) bool)
	Revoke(context.Context, posture.Revocation) (posture.Outcome, error)
	// SessionRevoked reports whether a session id was revoked; the
	// console records its sign-outs this way.
	SessionRevoked(id string) bool
}

// Gateway is what the console needs of the running gateway: its live
// requests, its feeds and certificates, and a decision under the current
// policy. The gateway implements it.
type Gateway interface {
	// Live calls f for every request being proxied now, until f returns
	// false. f must not block.
	Live(f func(*Conn) bool)
	// CloseLive ends the live request with the given request id, as
	// re-evaluation would, and reports whether there was one.
	CloseLive(requestID string) bool
	// Feeds reports the health of every configured feed.
	Feeds() []Feed
	// Certificates lists the server certificates, device CAs and CRLs in
	// force, with their expiry.
	Certificates() []Certificate
	// Explain decides q under the current configuration, gathering
	// posture, risk and revocations from the store as a request would.
	Explain(q Query) (Explanation, error)
}

// Log is the decision log: the console shows its records as they are
// written and adds its operators' actions to it. [*audit.Log] implements
// it.
type Log interface {
	Subscribe(buf int) (<-chan audit.Record, func())
	WriteAction(*audit.Action)
}

// Conn is one live request (a websocket, a stream, a download in
// progress) as the console shows it.
type Conn struct {
	RequestID string
	Resource  string
	User      string
	SessionID string
	DeviceCA  string
	DeviceID  string
	Method    string
	Host      string
	Path      string
	Protocol  string
	RemoteIP  string
	Started   time.Time
	BytesOut  int64 // response body bytes sent so far; for a websocket, its frames
	BytesIn   int64 // request body bytes received so far; for a websocket, its frames
}

// Feed is the health of one feed.
type Feed struct {
	feeds.FeedHealth
	// Silent is set when the feed has stored nothing for longer than
	// posture.max_age.
	Silent bool
	// Stream is the SSF stream's state; nil for other feed types.
	Stream *feeds.StreamStatus
}

// Certificate is one certificate or CRL whose expiry an operator watches.
type Certificate struct {
	Kind     string // "server", "device CA" or "CRL"
	Name     string
	NotAfter time.Time // a CRL's next update
	Detail   string
}

// Query is the input of a decision to explain: what a decision record
// says of the request.
type Query struct {
	Resource string
	User     string
	DeviceCA string
	DeviceID string
	Method   string
	Host     string
	Path     string
}

// Explanation is the decision of a [Query] under the current policy.
type Explanation struct {
	Verdict     string
	Reason      string
	Rule        string
	Message     string
	Remediation string
	// Inputs describes what was gathered: posture records, risk,
	// revocations, one line each.
	Inputs []string
}

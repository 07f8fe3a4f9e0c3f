package gateway

import "portcullis/internal/conf"

// ClientAuth is whether a listener's TLS handshake asks for a device
// certificate.
type ClientAuth string

// The client_auth modes.
const (
	// ClientAuthRequired fails the handshake without a certificate that
	// verifies.
	ClientAuthRequired ClientAuth = "required"
	// ClientAuthOptional asks for a certificate; a missing or bad one is
	// judged per resource, with a deny page.
	ClientAuthOptional ClientAuth = "optional"
	// ClientAuthOff does not ask.
	ClientAuthOff ClientAuth = "off"
)

// UnmarshalText implements [encoding.TextUnmarshaler].
func (m *ClientAuth) UnmarshalText(b []byte) (err error) {
	*m, err = conf.Enum(b, ClientAuthRequired, ClientAuthOptional, ClientAuthOff)
	return err
}

// Protocol is an application protocol a listener serves.
type Protocol string

// The protocols of listen[].protocols.
const (
	ProtoHTTP1 Protocol = "http/1.1"
	ProtoH2    Protocol = "h2"
	ProtoH3    Protocol = "h3"
)

// UnmarshalText implements [encoding.TextUnmarshaler].
func (p *Protocol) UnmarshalText(b []byte) (err error) {
	*p, err = conf.Enum(b, ProtoHTTP1, ProtoH2, ProtoH3)
	return err
}

package certs

import (
	"crypto/tls"
	"slices"
)

// VerifyConnection returns a function for [crypto/tls.Config.VerifyConnection]
// that verifies the peer's certificate against the CAs named in cas (nil or
// empty: all). A connection without a peer certificate passes: whether one
// is required is the job of ClientAuth and of the gateway's policy. It runs
// on resumed sessions too, and there hits the cache.
//
// Use it with ClientAuth RequestClientCert or RequireAnyClientCert: the
// VerifyClientCert modes would have crypto/tls verify the chain a second
// time, with laxer rules.
func (d *Devices) VerifyConnection(cas []string) func(tls.ConnectionState) error {
	cas = slices.Clone(cas)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := d.Verify(cs.PeerCertificates, cas)
		return err
	}
}

// Identity returns the device identity of a connection's peer
// certificate, verified against the CAs named in cas. It returns
// [ErrNoCertificate] when the peer sent none. After VerifyConnection it is
// a cache hit.
func (d *Devices) Identity(cs *tls.ConnectionState, cas []string) (*DeviceIdentity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoCertificate
	}
	return d.Verify(cs.PeerCertificates, cas)
}

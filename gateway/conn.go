package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"

	"portcullis/certs"
	"portcullis/enforcement"
)

// connInfo is what the gateway remembers about one client connection: the
// device identity its certificate proves, computed on the connection's
// first request and reused by the others (HTTP/2 and HTTP/3 streams
// included). It is recomputed when the configuration snapshot changed,
// since device CAs may have.
type connInfo struct {
	id  atomic.Pointer[connIdentity]
	fwd atomic.Pointer[forwardedValues] // of the last host requested
}

// forwarded returns the forwarding headers' values of a request from
// remoteAddr to host on this connection: the ones its last request used
// when they match, as they do for every request of an HTTP/1.1
// connection and for most streams of an HTTP/2 or HTTP/3 one.
func (ci *connInfo) forwarded(remoteAddr, host string) *forwardedValues {
	if fv := ci.fwd.Load(); fv != nil && fv.host == host && fv.remoteAddr == remoteAddr {
		return fv
	}
	fv := newForwardedValues(remoteAddr, host)
	ci.fwd.Store(fv)
	return fv
}

// connInfoOf returns the connection state of ctx's connection, or nil
// for a handler called directly.
func connInfoOf(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connKey{}).(*connInfo)
	return ci
}

type connIdentity struct {
	snap    *snapshot
	certGen uint64 // the revocation generation it was verified under
	cert    enforcement.CertStatus
	device  *certs.DeviceIdentity
	err     error                // why a presented certificate was not accepted
	subject *enforcement.Subject // the certificate's user, for login: none
}

type connKey struct{}

// withConnInfo is the listeners' ConnContext.
func withConnInfo(ctx context.Context) context.Context {
	return context.WithValue(ctx, connKey{}, &connInfo{})
}

// identity returns the device identity of the request's connection under
// snapshot s. Requests without a connInfo (handlers called directly) pay
// for a lookup each time.
func (s *snapshot) identity(ctx context.Context, cs *tls.ConnectionState) *connIdentity {
	ci := connInfoOf(ctx)
	if ci != nil {
		if cur := ci.id.Load(); cur != nil && cur.snap == s && cur.certGen == s.gw.certGen.Load() {
			return cur
		}
	}
	id := &connIdentity{snap: s, certGen: s.gw.certGen.Load()}
	if cs != nil && len(cs.PeerCertificates) > 0 && s.devices != nil {
		id.device, id.err = s.devices.Identity(cs, nil)
		switch {
		case id.err != nil:
			id.cert, id.device = certStatus(id.err), nil
		case id.device != nil:
			id.cert = enforcement.CertValid
		}
		if id.device != nil && id.device.User != "" {
			// A certificate-only user authenticated when the certificate
			// was issued: revoking the user refuses every certificate
			// issued before the revocation, on this connection and on
			// any later one, across reloads (docs/certificates.md).
			id.subject = &enforcement.Subject{UserID: id.device.User, Email: id.device.User, IdP: "device-certificate", AuthTime: id.device.NotBefore}
		}
	}
	if ci != nil {
		ci.id.Store(id)
	}
	return id
}

// certStatus maps the device verifier's answer to Decide's input.
// A nil error is no failure, and says nothing of whether a certificate was
// presented.
func certStatus(err error) enforcement.CertStatus {
	if err == nil {
		return enforcement.CertNone
	}
	var ve *certs.VerifyError
	if errors.As(err, &ve) {
		switch ve.Code {
		case certs.CodeRevoked:
			return enforcement.CertRevoked
		case certs.CodeOCSPUnavailable, certs.CodeCRLStale:
			return enforcement.CertUnverifiable
		}
	}
	return enforcement.CertInvalid
}

// certsRevoked is the device verifier's OnRevoked callback: a CRL refresh
// revoked these serials. Cached connection identities are dropped (the
// next request on every connection verifies again) and live requests of
// those certificates are closed.
func (g *Gateway) certsRevoked(serials []string) {
	set := make(map[string]bool, len(serials))
	for _, s := range serials {
		set[strings.ToLower(s)] = true
	}
	g.certGen.Add(1)
	if n := g.live.closeSerials(set); n > 0 {
		g.metrics.reevalClosed.WithLabelValues(string(enforcement.ReasonCertificateRevoked)).Add(float64(n))
		g.log.Warn("closed live requests of revoked device certificates", "count", n)
	}
}

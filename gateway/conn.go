package gateway

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"time"

	"portcullis/certs"
	"portcullis/enforcement"
)

// connInfo is what the gateway remembers about one client connection: the
// device identity its certificate proves, computed on the connection's
// first request and reused by the others (HTTP/2 and HTTP/3 streams
// included). It is recomputed when the configuration snapshot changed,
// since device CAs may have.
type connInfo struct {
	id atomic.Pointer[connIdentity]
}

type connIdentity struct {
	snap    *snapshot
	certGen uint64 // the revocation generation it was verified under
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
	ci, _ := ctx.Value(connKey{}).(*connInfo)
	if ci != nil {
		if cur := ci.id.Load(); cur != nil && cur.snap == s && cur.certGen == s.gw.certGen.Load() {
			return cur
		}
	}
	id := &connIdentity{snap: s, certGen: s.gw.certGen.Load()}
	if cs != nil && len(cs.PeerCertificates) > 0 && s.devices != nil {
		id.device, id.err = s.devices.Identity(cs, nil)
		if id.err == nil && id.device != nil && id.device.User != "" {
			// The connection is the session of a certificate-only user: it
			// was authenticated when its identity was first established.
			id.subject = &enforcement.Subject{UserID: id.device.User, Email: id.device.User, IdP: "device-certificate", AuthTime: time.Now()}
		}
	}
	if ci != nil {
		ci.id.Store(id)
	}
	return id
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

package gateway

import (
	"net/http"
	"net/http/httputil"
	"strings"

	"portcullis/enforcement"
	"portcullis/gateway/assertion"
)

// Identity headers an upstream receives. Every client header that could be
// read as one (see [identityHeaderName]) is removed before these are set,
// so an upstream can trust them when it trusts the gateway.
const (
	hdrPrefix    = "X-Portcullis-"
	hdrUser      = "X-Portcullis-User"
	hdrEmail     = "X-Portcullis-Email"
	hdrGroups    = "X-Portcullis-Groups"
	hdrDeviceID  = "X-Portcullis-Device-Id"
	hdrDeviceCA  = "X-Portcullis-Device-Ca"
	hdrRequestID = "X-Portcullis-Request-Id"
	hdrAssertion = "X-Portcullis-Assertion"
)

// upstreamIdentity is what the handler decided an upstream is told about
// one allowed request. The handler fills it in the request's live entry;
// the resource's ReverseProxy.Rewrite sets it on the outbound request,
// after httputil.ReverseProxy removed the hop-by-hop headers, so a client
// naming identity headers in Connection cannot make the proxy delete
// them. It is never changed after the handler made it.
type upstreamIdentity struct {
	n    int
	keys [7]string
	vals [7]string // each header's one value; the slices point here
}

func (u *upstreamIdentity) set(k, v string) {
	if v == "" {
		return
	}
	u.keys[u.n], u.vals[u.n] = k, v
	u.n++
}

// prepareUpstream fills e with what the resource's Rewrite sets on the
// outbound request: the identity headers and the connection's forwarding
// values.
func (g *Gateway) prepareUpstream(e *liveEntry, r *http.Request, res *resource, in *enforcement.Input, reqID string) {
	g.setUpstreamIdentity(&e.up, res, in, reqID)
	if ci := connInfoOf(r.Context()); ci != nil {
		e.fwd = ci.forwarded(r.RemoteAddr, r.Host)
	}
}

// setUpstreamIdentity fills u with the identity the gateway established
// for a request, with a signed assertion of it.
func (g *Gateway) setUpstreamIdentity(u *upstreamIdentity, res *resource, in *enforcement.Input, reqID string) {
	u.set(hdrRequestID, reqID)
	c := assertion.Claims{Resource: res.name}
	if sub := in.Subject; sub != nil {
		u.set(hdrUser, sub.UserID)
		u.set(hdrEmail, sub.Email)
		if len(sub.Groups) > 0 {
			u.set(hdrGroups, strings.Join(sub.Groups, ","))
		}
		c.UserID, c.Email, c.Groups = sub.UserID, sub.Email, sub.Groups
	}
	if d := in.Device; d != nil {
		u.set(hdrDeviceID, d.DeviceID)
		u.set(hdrDeviceCA, d.CA)
		c.DeviceID, c.DeviceCA = d.DeviceID, d.CA
	}
	if tok, err := g.signer.Assertion(c); err == nil {
		u.set(hdrAssertion, tok)
	} else {
		g.log.Error("signing identity assertion", "error", err)
	}
}

// requestID returns the gateway's id of a request that was allowed, for
// the proxy's error answers and logs; never what a client sent.
func requestID(r *http.Request) string {
	if e := liveEntryOf(r); e != nil {
		return e.requestID
	}
	return ""
}

// headerRules is what a resource's Rewrite removes from and adds to every
// outbound request besides the forwarding headers. It is built once per
// resource and never changed.
type headerRules struct {
	strip    []string // configured extra headers, as [foldHeaderName] writes them
	upgrades []string // Upgrade protocols passed on, lower case
}

func newHeaderRules(strip, upgrades []string) *headerRules {
	hr := &headerRules{}
	for _, h := range strip {
		hr.strip = append(hr.strip, foldHeaderName(h))
	}
	if len(upgrades) == 0 {
		upgrades = []string{"websocket"}
	}
	for _, u := range upgrades {
		hr.upgrades = append(hr.upgrades, strings.ToLower(u))
	}
	return hr
}

// foldHeaderName is a header name as the stripping compares it: lower
// case, with '_' read as '-', as CGI, WSGI, PHP and nginx-fronted servers
// read it (HTTP_X_PORTCULLIS_USER).
func foldHeaderName(k string) string {
	return strings.ReplaceAll(strings.ToLower(k), "_", "-")
}

// equalFoldHeader reports whether k, folded as [foldHeaderName] does,
// equals the folded name f; it does not allocate.
func equalFoldHeader(k, f string) bool {
	return len(k) == len(f) && hasFoldedPrefix(k, f)
}

// hasFoldedPrefix reports whether k, folded, starts with the folded f.
func hasFoldedPrefix(k, f string) bool {
	if len(k) < len(f) {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := k[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != f[i] {
			return false
		}
	}
	return true
}

// identityHeaderName reports whether an upstream could read client header
// k as one of the gateway's: X-Portcullis-* in any case, with '_' for
// '-', the bare prefix included.
func identityHeaderName(k string) bool { return hasFoldedPrefix(k, "x-portcullis-") }

// rewrite is the part of a resource's ReverseProxy.Rewrite that runs after
// the forwarding headers are set: it removes every client header that
// could pose as identity, sets the identity the handler established (in
// e, the request's live entry; nil when the handler did not decide it),
// and drops Upgrade offers the resource does not take.
func (hr *headerRules) rewrite(pr *httputil.ProxyRequest, e *liveEntry) {
	h := pr.Out.Header
	for k := range h {
		if identityHeaderName(k) {
			delete(h, k)
			continue
		}
		for _, f := range hr.strip {
			if equalFoldHeader(k, f) {
				delete(h, k)
				break
			}
		}
	}
	hr.filterUpgrade(pr)
	if e == nil {
		return // not decided by the handler: no identity at all
	}
	u := &e.up
	for i := 0; i < u.n; i++ {
		h[u.keys[i]] = u.vals[i : i+1 : i+1]
	}
}

// filterUpgrade removes an Upgrade offer (RFC 9110 §7.8) unless it names
// exactly one protocol the resource takes (websocket by default): h2c or an
// arbitrary protocol reaching an upstream is a smuggling vector. HTTP2-
// Settings belongs to an h2c upgrade: it is passed on only with an h2c
// upgrade the resource takes, and when the client listed it in
// Connection, as RFC 7540 §3.2 requires (ReverseProxy removed it then, as
// hop-by-hop).
func (hr *headerRules) filterUpgrade(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	delete(h, "Http2-Settings")
	up := h["Upgrade"]
	if len(up) == 0 {
		return
	}
	if len(up) == 1 {
		tok := strings.TrimSpace(up[0])
		for _, a := range hr.upgrades {
			if strings.EqualFold(tok, a) {
				if s := pr.In.Header["Http2-Settings"]; len(s) == 1 && a == "h2c" && connectionLists(pr.In.Header, "HTTP2-Settings") {
					h["Http2-Settings"] = s
					h["Connection"] = []string{"Upgrade, HTTP2-Settings"}
				}
				return
			}
		}
	}
	delete(h, "Upgrade")
	delete(h, "Connection")
}

func connectionLists(h http.Header, token string) bool {
	for _, v := range h["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

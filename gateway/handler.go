package gateway

import (
	"net/http"
	"path"
	"strings"
	"time"

	"portcullis/enforcement"
	"portcullis/gateway/assertion"
	"portcullis/gateway/audit"
	"portcullis/identity"
	"portcullis/internal/deny"
)

// Identity headers an upstream receives. Every incoming X-Portcullis-*
// header is removed before these are set, so an upstream can trust them
// when it trusts the gateway.
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

// reservedPrefix is the path space the gateway answers itself on every
// host: feeds, and later login callbacks.
const reservedPrefix = "/.portcullis/"

// ServeHTTP runs the pipeline of DESIGN.md §2 for one request, as named
// stages: route, gather (device, user, posture, risk, revocations),
// decide, then respond (proxy, challenge or deny), and record one decision
// record however the request ends.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := g.cur.Load() // one configuration for the whole request
	start := time.Now()
	reqID, seq := g.ids.next()
	if s.altSvc != "" && r.ProtoMajor < 3 {
		w.Header()["Alt-Svc"] = s.altSvcValue
	}

	p := r.URL.Path
	if !isClean(p) {
		// Route and forward the same, cleaned path: an upstream must never
		// see a path other than the one the policy was decided on.
		p = cleanPath(p)
		r.URL.Path, r.URL.RawPath = p, ""
	}
	if strings.HasPrefix(p, reservedPrefix) || strings.HasPrefix(p, "/.well-known/portcullis/") {
		if h := s.system[p]; h != nil {
			h.ServeHTTP(w, r)
			return
		}
	}

	rec := audit.Record{Time: start, RequestID: reqID, Method: r.Method, Host: r.Host, Path: p, Protocol: r.Proto, RemoteIP: remoteIP(r.RemoteAddr)}

	// Route.
	res := s.router.match(r.Host, p)
	if res == nil {
		rec.Verdict, rec.Reason = enforcement.Deny.String(), string(enforcement.ReasonRouteNotFound)
		rec.Status = http.StatusNotFound
		g.deny(w, r, nil, &rec, http.StatusNotFound, enforcement.ReasonRouteNotFound)
		return
	}
	rec.Resource = res.name

	// Gather, then decide.
	in := enforcement.Input{
		Now:     start,
		Request: enforcement.Request{Method: r.Method, Host: r.Host, Path: p, Protocol: r.Proto, RemoteIP: rec.RemoteIP},
	}
	auth := g.gather(s, w, r, res, &in)
	if in.Device != nil {
		rec.Device, rec.DeviceCA = in.Device.DeviceID, in.Device.CA
	}
	if in.Subject != nil {
		rec.User = in.Subject.UserID
	}
	dec := enforcement.Decide(res.policy, &in)
	decided := time.Now()
	rec.DecisionLatency = decided.Sub(start)
	rec.Verdict, rec.Reason, rec.Rule = dec.Verdict.String(), string(dec.Reason), dec.Rule
	g.metrics.decision(&res.counters, res.name, dec, rec.DecisionLatency)

	// Respond.
	if dec.Verdict != enforcement.Allow {
		g.refuse(w, r, res, auth, dec, &rec)
		return
	}
	g.forward(w, r, s, res, &in, seq, &rec)
}

// gather fills in with what is known of the request's device and user:
// the connection's certificate (ignored when the resource turns
// certificates off), the subject its login proves, and, through
// [enforcement.Gather], posture, risk and revocations. It returns the
// resource's authenticator, nil for `login: none`.
func (g *Gateway) gather(s *snapshot, w http.ResponseWriter, r *http.Request, res *resource, in *enforcement.Input) identity.Authenticator {
	if res.policy.DeviceCertificate() != enforcement.CertOff {
		id := s.identity(r.Context(), r.TLS)
		in.Cert, in.Device = id.cert, id.device
		in.Subject = id.subject // login: none: the user the certificate names
	}
	var auth identity.Authenticator
	if login := res.policy.Login(); login != "" && login != enforcement.LoginNone {
		auth = s.logins.Authenticator(login)
	}
	if auth != nil {
		in.Subject = auth.Authenticate(w, r) // may refresh an idle session's cookie
	}
	enforcement.Gather(g.store, in)
	return auth
}

// refuse answers a request Decide did not allow: a login or step-up
// challenge where the resource has a login and the certificate is not the
// problem, else the deny page or problem document.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, res *resource, auth identity.Authenticator, dec enforcement.Decision, rec *audit.Record) {
	if auth != nil && (dec.Verdict == enforcement.Login || dec.Verdict == enforcement.StepUp) {
		rec.Status = http.StatusUnauthorized
		auth.Challenge(w, r, dec, res.challenge(rec.RequestID))
		rec.Total = time.Since(rec.Time)
		g.audit.Write(rec)
		return
	}
	status := http.StatusForbidden
	if dec.Verdict == enforcement.Login || dec.Verdict == enforcement.StepUp {
		status = http.StatusUnauthorized
	}
	rec.Status = status
	g.deny(w, r, res, rec, status, dec.Reason)
}

// forward proxies an allowed request upstream with the identity the
// gateway established, as a live request the re-evaluator can close, and
// records it. The record is written and the registry left in a deferred
// call: ReverseProxy ends a streamed response whose copy fails by
// panicking with [http.ErrAbortHandler], and that request must leave the
// registry and be recorded like any other.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, s *snapshot, res *resource, in *enforcement.Input, seq uint64, rec *audit.Record) {
	decided := rec.Time.Add(rec.DecisionLatency)
	g.setIdentityHeaders(s, r, res, in, rec.RequestID)
	r, live := g.live.track(r, res, in, seq, rec.RequestID)
	sw := statusWriterPool.Get().(*statusWriter)
	sw.reset(w)
	defer func() {
		live.done()
		end := time.Now()
		if d, closed := live.closedBy(); closed {
			// A feed turned this request's device or user bad while it
			// ran: the record says how it ended, not how it began.
			rec.Verdict, rec.Reason, rec.Rule = d.Verdict.String(), string(d.Reason), "reevaluate:"+d.Rule
		}
		rec.Status, rec.BytesOut = sw.status, sw.bytes
		sw.reset(nil)
		statusWriterPool.Put(sw)
		rec.UpstreamLatency = end.Sub(decided)
		rec.Total = end.Sub(rec.Time)
		g.metrics.upstream(res.name, rec.UpstreamLatency)
		g.audit.Write(rec)
	}()
	if isConnectWebsocket(r) {
		g.proxyConnectWebsocket(sw.writer(), r, res)
	} else {
		res.proxy.ServeHTTP(sw.writer(), r)
	}
}

// deny answers a request that will not be proxied, and records it.
func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, res *resource, rec *audit.Record, status int, reason enforcement.Reason) {
	info := deny.Info{
		Status:    status,
		Reason:    string(reason),
		Title:     http.StatusText(status),
		Detail:    reason.Message(),
		RequestID: rec.RequestID,
	}
	if res != nil {
		info.Resource = res.name
		if status == http.StatusForbidden {
			info.Remediation = res.cfg.Remediation
		}
	}
	deny.Write(w, r, info)
	rec.Total = time.Since(rec.Time)
	g.audit.Write(rec)
}

// setIdentityHeaders removes every header a client could use to pose as
// someone (X-Portcullis-* and the configured extras) and sets the identity
// the gateway established, with a signed assertion of it.
func (g *Gateway) setIdentityHeaders(s *snapshot, r *http.Request, res *resource, in *enforcement.Input, reqID string) {
	h := r.Header
	for k := range h {
		if len(k) > len(hdrPrefix) && strings.EqualFold(k[:len(hdrPrefix)], hdrPrefix) {
			delete(h, k)
		}
	}
	for _, k := range s.strip {
		delete(h, k)
	}
	vals := make([]string, 0, 7) // one backing array for every header value
	set := func(k, v string) {
		if v == "" {
			return
		}
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(hdrRequestID, reqID)
	c := assertion.Claims{Resource: res.name}
	if sub := in.Subject; sub != nil {
		set(hdrUser, sub.UserID)
		set(hdrEmail, sub.Email)
		if len(sub.Groups) > 0 {
			set(hdrGroups, strings.Join(sub.Groups, ","))
		}
		c.UserID, c.Email, c.Groups = sub.UserID, sub.Email, sub.Groups
	}
	if d := in.Device; d != nil {
		set(hdrDeviceID, d.DeviceID)
		set(hdrDeviceCA, d.CA)
		c.DeviceID, c.DeviceCA = d.DeviceID, d.CA
	}
	if tok, err := g.signer.Assertion(c); err == nil {
		set(hdrAssertion, tok)
	} else {
		g.log.Error("signing identity assertion", "error", err)
	}
}

// isClean reports whether p is already in canonical form: absolute, with
// no empty, "." or ".." segments. Most paths are, and need no allocation.
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		if strings.HasPrefix(rest, "/") || rest == "." || rest == ".." ||
			strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
			return false
		}
	}
	return true
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	trailing := strings.HasSuffix(p, "/")
	c := path.Clean("/" + p)
	if trailing && c != "/" {
		c += "/"
	}
	return c
}

func remoteIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

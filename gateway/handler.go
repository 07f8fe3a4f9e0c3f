package gateway

import (
	"net/http"
	"strings"
	"time"

	"portcullis/enforcement"
	"portcullis/gateway/audit"
	"portcullis/identity"
	"portcullis/internal/deny"
)

// ServeHTTP runs the pipeline of DESIGN.md §2 for one request, as named
// stages: route, gather (device, user, posture, risk, revocations),
// decide, then respond (proxy, challenge or deny), and record one decision
// record however the request ends.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := g.cur.Load() // one configuration for the whole request
	start := time.Now()
	st := new(requestState) // the one allocation of the gateway's own per request
	reqID, seq := g.ids.nextID(st)
	if s.altSvc != "" && r.ProtoMajor < 3 {
		w.Header()["Alt-Svc"] = s.altSvcValue
	}

	// Route and forward the same, normal host and path: an upstream must
	// never see a target other than the one the policy was decided on.
	p, ok := g.serveEdge(w, r, s, reqID, start)
	if !ok {
		return
	}

	rec := audit.Record{Time: start, RequestID: reqID, Method: r.Method, Host: r.Host, Path: p, Protocol: protocol(r), RemoteIP: remoteIP(r.RemoteAddr)}

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
	in := &st.in
	*in = enforcement.Input{
		Now:     start,
		Request: enforcement.Request{Method: r.Method, Host: r.Host, Path: p, Protocol: rec.Protocol, RemoteIP: rec.RemoteIP},
	}
	auth := g.gather(s, w, r, res, in)
	if in.Device != nil {
		rec.Device, rec.DeviceCA = in.Device.DeviceID, in.Device.CA
	}
	if in.Subject != nil {
		rec.User = in.Subject.UserID
	}
	dec := enforcement.Decide(res.policy, in)
	decided := time.Now()
	rec.DecisionLatency = decided.Sub(start)
	rec.Verdict, rec.Reason, rec.Rule = dec.Verdict.String(), string(dec.Reason), dec.Rule
	g.metrics.decision(&res.metrics, res.name, dec, rec.DecisionLatency)

	// Respond.
	if dec.Verdict != enforcement.Allow {
		g.refuse(w, r, res, auth, dec, &rec)
		return
	}
	g.forward(w, r, s, res, st, seq, &rec)
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
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, s *snapshot, res *resource, st *requestState, seq uint64, rec *audit.Record) {
	adm, ok := g.admit(w, r, s, rec)
	if !ok {
		return
	}
	defer adm.release()
	decided := rec.Time.Add(rec.DecisionLatency)
	live := &st.live
	g.prepareUpstream(live, r, res, &st.in, rec.RequestID)
	r = g.live.track(r, live, res, &st.in, seq, rec.RequestID)
	sw := statusWriterPool.Get().(*statusWriter)
	sw.reset(w)
	sw.live = live
	countBody(r, live)
	defer func() {
		live.done()
		end := time.Now()
		if d, closed := live.closedBy(); closed {
			// A feed turned this request's device or user bad while it
			// ran, or an operator closed it: the record says how it
			// ended, not how it began.
			rec.Verdict, rec.Reason, rec.Rule = d.Verdict.String(), string(d.Reason), closedRule(d)
		}
		rec.Status, rec.BytesOut, rec.BytesIn = sw.status, live.bytesOut.Load(), live.bytesIn.Load()
		sw.reset(nil)
		statusWriterPool.Put(sw)
		rec.UpstreamLatency = end.Sub(decided)
		rec.Total = end.Sub(rec.Time)
		g.metrics.upstream(&res.metrics, res.name, rec.UpstreamLatency)
		adm.finish(w, r, rec)
		g.audit.Write(rec)
	}()
	switch {
	case res.local != nil:
		res.local(sw.writer(), r, &st.in)
	case isConnectWebsocket(r):
		g.proxyConnectWebsocket(sw.writer(), r, res)
	default:
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

func remoteIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

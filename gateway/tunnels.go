package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/enforcement"
	"portcullis/gateway/audit"
	"portcullis/gateway/tunnel"
	"portcullis/internal/conf"
	"portcullis/internal/deny"
)

// The tunnel endpoint (docs/tunnels.md): a CONNECT whose connection was
// made to a tunnel resource's proxy host is routed here instead of being
// refused with 405. It runs the stages of every request — route, gather,
// decide, respond, record — with the same gather and Decide as the HTTP
// path, then checks the destination on its resolved addresses, dials
// one of them, registers the tunnel as a live request the re-evaluator
// can close, and carries the bytes.

// tunnelState is what the tunnel endpoint keeps across configuration
// snapshots: the per-user counts, the metrics, and the gateway's own
// addresses.
type tunnelState struct {
	limiter  *tunnel.Limiter
	metrics  *tunnel.Metrics
	resolver tunnel.Resolver

	localOnce sync.Once
	local     map[netip.Addr]bool // this host's interface addresses
}

func newTunnelState(reg prometheus.Registerer) (*tunnelState, error) {
	m, err := tunnel.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &tunnelState{limiter: tunnel.NewLimiter(), metrics: m, resolver: net.DefaultResolver}, nil
}

// tunnelTable is a snapshot's compiled tunnel resources, by name and by
// proxy host. It is never modified after build.
type tunnelTable struct {
	byName map[string]*tunnelRes
	exact  map[string]*tunnelRes // lower-case host or IP
	wild   map[string]*tunnelRes // "example.com" for "*.example.com"
}

// tunnelRes is a compiled tunnel resource; res carries its name and
// policy to gather, as an HTTP resource's would.
type tunnelRes struct {
	*tunnel.Tunnel
	res *resource
}

// buildTunnels compiles cfg's tunnels into s.
func buildTunnels(cfg *Config, s *snapshot) error {
	tt := &tunnelTable{byName: map[string]*tunnelRes{}, exact: map[string]*tunnelRes{}, wild: map[string]*tunnelRes{}}
	var errs []error
	for i, tc := range cfg.Tunnels {
		t, err := tunnel.Compile(tc, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()})
		if err != nil {
			errs = append(errs, conf.AtKey(fmt.Sprintf("tunnels[%d]", i), err))
			continue
		}
		tr := &tunnelRes{Tunnel: t, res: &resource{name: t.Name, policy: t.Policy, cfg: &ResourceConfig{Name: t.Name, Remediation: t.Remediation}}}
		tt.byName[t.Name] = tr
		for _, h := range t.Hosts {
			h = strings.Trim(strings.TrimSuffix(strings.ToLower(h), "."), "[]")
			if d, ok := strings.CutPrefix(h, "*."); ok {
				tt.wild[d] = tr
			} else {
				tt.exact[h] = tr
			}
		}
	}
	s.tunnels = tt
	return errors.Join(errs...)
}

// match returns the tunnel resource whose proxy host the request's
// connection was made to: its TLS server name, or, without one, the
// local address it arrived at.
func (tt *tunnelTable) match(r *http.Request) *tunnelRes {
	if tt == nil || len(tt.byName) == 0 {
		return nil
	}
	host := ""
	if r.TLS != nil {
		host = strings.TrimSuffix(strings.ToLower(r.TLS.ServerName), ".")
	}
	if host == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				host = ap.Addr().Unmap().String()
			}
		}
	}
	if t := tt.exact[host]; t != nil {
		return t
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return tt.wild[host[i+1:]]
	}
	return nil
}

// validateTunnels checks the tunnels section against the rest of the
// configuration: names unique among resources and tunnels, device CAs and
// identity providers that exist, and proxy hosts no other tunnel claims.
func (c *Config) validateTunnels(resourceNames, caNames map[string]bool) error {
	var errs []error
	seen := map[string]bool{}
	hosts := map[string]string{}
	for i := range c.Tunnels {
		t := &c.Tunnels[i]
		key := fmt.Sprintf("tunnels[%d]", i)
		errs = append(errs, conf.AtKey(key, t.Validate()))
		switch {
		case t.Name == "":
		case resourceNames[t.Name]:
			errs = append(errs, conf.Errorf(key+".name", "%q is already the name of a resource", t.Name))
		case seen[t.Name]:
			errs = append(errs, conf.Errorf(key+".name", "duplicate tunnel name %q", t.Name))
		}
		seen[t.Name] = true
		for j, h := range t.Hosts {
			h = strings.ToLower(h)
			if other, dup := hosts[h]; dup {
				errs = append(errs, conf.Errorf(fmt.Sprintf("%s.hosts[%d]", key, j), "host %s is already the proxy host of tunnel %s", h, other))
			}
			hosts[h] = t.Name
		}
		for j, ca := range t.Policy.Device.CAs {
			if !caNames[ca] {
				errs = append(errs, conf.Errorf(fmt.Sprintf("%s.policy.device.cas[%d]", key, j), "unknown device CA %q", ca))
			}
		}
		if login := t.Policy.Login; login != "" && login != enforcement.LoginNone && !c.Identity.Has(login) {
			errs = append(errs, conf.Errorf(key+".policy.login", "unknown identity provider %q (configure it under identity, or use none)", login))
		}
	}
	return errors.Join(errs...)
}

// serveTunnel answers a CONNECT routed to tunnel resource t: it decides
// whether the client may open a tunnel at all, exactly as the HTTP path
// decides a request, then whether it may reach the destination, and
// carries the tunnel until it ends. Nothing but a refusal is sent before
// both checks pass.
func (g *Gateway) serveTunnel(w http.ResponseWriter, r *http.Request, s *snapshot, t *tunnelRes, reqID string, start time.Time) {
	proto := protocol(r)
	rec := audit.Record{Time: start, RequestID: reqID, Resource: t.Name, Method: r.Method, Host: r.Host,
		Protocol: proto, RemoteIP: remoteIP(r.RemoteAddr)}
	refuse := func(status int, perr string, reason enforcement.Reason, detail string) {
		g.tunnels.metrics.Denials.WithLabelValues(t.Name, string(reason)).Inc()
		rec.Status = status
		if rec.Verdict == "" {
			rec.Verdict = enforcement.Deny.String()
		}
		rec.Reason = string(reason)
		w.Header().Set("Proxy-Status", tunnel.ProxyStatus{Proxy: tunnel.ProxyName, Error: perr, Details: string(reason)}.String())
		info := deny.Info{Status: status, Reason: string(reason), Title: http.StatusText(status), Detail: detail,
			RequestID: reqID, Resource: t.Name}
		if status == http.StatusForbidden {
			info.Remediation = t.Remediation
		}
		deny.Write(w, r, info)
		rec.Total = time.Since(start)
		g.audit.Write(&rec)
	}

	// Only plain CONNECT is built: over HTTP/2 an extended CONNECT
	// carries :protocol, over HTTP/3 quic-go puts it in Proto.
	if r.ProtoMajor == 2 && r.Header.Get(":protocol") != "" || r.ProtoMajor == 3 && r.Proto != "HTTP/3.0" {
		refuse(http.StatusNotImplemented, "http_protocol_error", tunnel.ReasonProtocolUnsupported,
			"Only plain CONNECT (TCP) is supported; CONNECT-UDP and CONNECT-IP are not built yet.")
		return
	}
	target, err := tunnel.ParseTarget(r.Host)
	if err != nil {
		refuse(http.StatusBadRequest, "http_request_error", tunnel.ReasonInvalidTarget, err.Error()+".")
		return
	}
	rec.Host = target.String()

	// Gather, then decide: the HTTP path's two steps. A CONNECT carries
	// its bearer token in Proxy-Authorization; the identity providers
	// read Authorization.
	if pa := r.Header.Get("Proxy-Authorization"); pa != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", pa)
	}
	r.Header.Del("Proxy-Authorization")
	in := enforcement.Input{Now: start,
		Request: enforcement.Request{Method: r.Method, Host: rec.Host, Protocol: proto, RemoteIP: rec.RemoteIP}}
	g.gather(s, w, r, t.res, &in)
	if in.Device != nil {
		rec.Device, rec.DeviceCA = in.Device.DeviceID, in.Device.CA
	}
	if in.Subject != nil {
		rec.User = in.Subject.UserID
	}
	dec := enforcement.Decide(t.Policy, &in)
	rec.DecisionLatency = time.Since(start)
	rec.Verdict, rec.Reason, rec.Rule = dec.Verdict.String(), string(dec.Reason), dec.Rule
	g.metrics.decision(&t.res.metrics, t.Name, dec, rec.DecisionLatency)
	if dec.Verdict != enforcement.Allow {
		// 407 when a user token would help (the policy has a login); a
		// missing device certificate is no matter of proxy credentials.
		status := http.StatusForbidden
		if (dec.Verdict == enforcement.Login || dec.Verdict == enforcement.StepUp) && t.Policy.Login() != enforcement.LoginNone {
			status = http.StatusProxyAuthRequired
		}
		refuse(status, "http_request_denied", dec.Reason, dec.Reason.Message())
		return
	}
	// The verdict stays allow; a refusal below says why in its reason.
	rec.Verdict = enforcement.Allow.String()

	release := g.tunnels.limiter.Acquire(t.Name, tunnelUser(&in), t.MaxPerUser)
	if release == nil {
		refuse(http.StatusTooManyRequests, "http_request_denied", tunnel.ReasonUserLimit,
			fmt.Sprintf("You have %d tunnels of this resource open, the most allowed; close one and retry.", t.MaxPerUser))
		return
	}
	defer release()

	addrs, why := t.Resolve(r.Context(), g.tunnels.resolver, g.isSelf, target)
	if why == nil {
		var up net.Conn
		if up, why = t.DialAddrs(r.Context(), addrs); why == nil {
			g.carryTunnel(w, r, t, &in, up, &rec)
			return
		}
	}
	if why.Err != nil {
		g.log.Warn("tunnel refused", "tunnel", t.Name, "request_id", reqID, "reason", string(why.Reason), "error", why.Err)
	}
	refuse(why.Status, why.ProxyError, why.Reason, why.Detail)
}

// carryTunnel runs an allowed tunnel to up: registered as a live request
// for its whole life, with one decision record when it opens and one when
// it ends.
func (g *Gateway) carryTunnel(w http.ResponseWriter, r *http.Request, t *tunnelRes, in *enforcement.Input, up net.Conn, rec *audit.Record) {
	rec.Destination = up.RemoteAddr().String()
	ctx, live := g.live.trackTunnel(r.Context(), t.res, in, uint64(rec.Time.UnixNano()), rec.RequestID)
	if g.runCtx != nil {
		// A tunnel has no natural end a graceful shutdown could wait
		// for: close it when the gateway starts to stop.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(g.runCtx, cancel)
		defer stop()
	}
	open := g.tunnels.metrics.Open.WithLabelValues(t.Name, rec.Protocol)
	opened := false
	res := tunnel.Serve(ctx, w, r, up, tunnel.Options{Idle: t.Idle, Max: t.Max, BytesIn: &live.bytesIn, BytesOut: &live.bytesOut,
		OnOpen: func() {
			opened = true
			open.Inc()
			rec.Status, rec.Event = http.StatusOK, "tunnel_open"
			rec.Total = time.Since(rec.Time)
			g.audit.Write(rec)
		}})
	live.done()
	if opened {
		open.Dec()
	}
	in2, out := live.bytesIn.Load(), live.bytesOut.Load()
	g.tunnels.metrics.Bytes.WithLabelValues(t.Name, "in").Add(float64(in2))
	g.tunnels.metrics.Bytes.WithLabelValues(t.Name, "out").Add(float64(out))
	end := string(res.End)
	rec.Reason, rec.Rule = end, ""
	if d, closed := live.closedBy(); closed {
		rec.Verdict, rec.Reason, rec.Rule = d.Verdict.String(), string(d.Reason), closedRule(d)
		end = string(d.Reason)
	}
	g.tunnels.metrics.Ended.WithLabelValues(t.Name, end).Inc()
	rec.Event, rec.BytesIn, rec.BytesOut = "tunnel_end", in2, out
	if !opened {
		rec.Status = 0
	}
	rec.Total = time.Since(rec.Time)
	g.audit.Write(rec)
	res.Finish()
}

// trackTunnel registers an open tunnel as a live request, as track does
// for a proxied request, and returns the context that re-evaluation
// cancels to close it.
func (reg *liveRegistry) trackTunnel(ctx context.Context, res *resource, in *enforcement.Input, seq uint64, reqID string) (context.Context, *liveEntry) {
	e := &liveEntry{}
	reg.register(ctx, e, res, in, seq, reqID)
	return e, e
}

// tunnelUser is whom max_per_user counts a tunnel against: the user, or,
// for a certificate that names none, the device.
func tunnelUser(in *enforcement.Input) string {
	switch {
	case in.Subject != nil && in.Subject.UserID != "":
		return "user:" + in.Subject.UserID
	case in.Device != nil:
		return "device:" + in.Device.CA + "/" + in.Device.DeviceID
	}
	return "anonymous"
}

// isSelf reports whether ap is one of the gateway's own listeners (client
// and admin): a tunnel must not loop back into the gateway, where it
// would arrive from a trusted local address.
func (g *Gateway) isSelf(ap netip.AddrPort) bool {
	for _, a := range g.listenerAddrs() {
		l, err := netip.ParseAddrPort(a)
		if err != nil || l.Port() != ap.Port() {
			continue
		}
		la := l.Addr().Unmap()
		if la == ap.Addr() {
			return true
		}
		if la.IsUnspecified() && (ap.Addr().IsLoopback() || g.tunnels.localAddr(ap.Addr())) {
			return true
		}
	}
	return false
}

// localAddr reports whether a is an address of one of this host's
// interfaces, as they were when first asked.
func (ts *tunnelState) localAddr(a netip.Addr) bool {
	ts.localOnce.Do(func() {
		ts.local = map[netip.Addr]bool{}
		addrs, _ := net.InterfaceAddrs()
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				ts.local[p.Addr().Unmap()] = true
			}
		}
	})
	return ts.local[a]
}

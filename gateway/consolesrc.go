package gateway

import (
	"fmt"
	"strings"
	"time"

	"portcullis/certs"
	"portcullis/enforcement"
	"portcullis/gateway/console"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/posture"
	"portcullis/posture/feeds"
)

// ruleAdminConsole is the rule of the record of a live request an
// operator closed from the console (reason admin.closed).
const ruleAdminConsole = "admin.console"

// newConsole builds the admin console of cfg, or returns nil when it is
// off.
func (g *Gateway) newConsole(cfg *Config) (*console.Console, error) {
	if !cfg.Admin.Console.Enabled {
		return nil, nil
	}
	var keys [][]byte
	if f := cfg.Admin.Console.SessionKeyFile; f != "" {
		var err error
		if keys, err = session.LoadKeyFile(f.String(), false); err != nil {
			return nil, conf.AtKey("session_key_file", err)
		}
	}
	return console.New(console.Options{
		Config:        cfg.Admin.Console,
		Store:         g.store,
		Gateway:       consoleSource{g},
		Log:           g.audit,
		Token:         g.adminToken,
		SessionKeys:   keys,
		HostLogout:    consoleLogout(cfg),
		PostureMaxAge: cfg.Posture.MaxAge.Std(),
		Logger:        g.log.With("component", "console"),
	})
}

// consoleSource is the gateway as the console sees it.
type consoleSource struct{ g *Gateway }

// Live implements [console.Gateway].
func (c consoleSource) Live(f func(*console.Conn) bool) {
	var cn console.Conn
	stop := false
	c.g.live.rangeEntries(func(e *liveEntry) {
		if stop {
			return
		}
		cn = console.Conn{RequestID: e.requestID, Resource: e.resource, User: e.userID(), Method: e.Request.Method,
			Host: e.Request.Host, Path: e.Request.Path, Protocol: e.Request.Protocol, RemoteIP: e.Request.RemoteIP,
			Started: e.started, BytesOut: e.bytesOut.Load(), BytesIn: e.bytesIn.Load()}
		if e.Device != nil {
			cn.DeviceCA, cn.DeviceID = e.Device.CA, e.Device.DeviceID
		}
		if e.Subject != nil {
			cn.SessionID = e.Subject.SessionID
		}
		stop = !f(&cn)
	})
}

// CloseLive implements [console.Gateway].
func (c consoleSource) CloseLive(requestID string) bool {
	var hit *liveEntry
	c.g.live.rangeEntries(func(e *liveEntry) {
		if e.requestID == requestID {
			hit = e
		}
	})
	if hit == nil {
		return false
	}
	hit.close(enforcement.Decision{Verdict: enforcement.Deny, Reason: enforcement.ReasonAdminClosed, Rule: ruleAdminConsole})
	c.g.metrics.reevalClosed.WithLabelValues(string(enforcement.ReasonAdminClosed)).Inc()
	return true
}

// closedRule is the rule a decision record names for a live request
// closed while it ran: the re-evaluation's rule, marked as such, or
// admin.console for an operator's close.
func closedRule(d enforcement.Decision) string {
	if d.Reason == enforcement.ReasonAdminClosed {
		return d.Rule
	}
	return "reevaluate:" + d.Rule
}

// Feeds implements [console.Gateway].
func (c consoleSource) Feeds() []console.Feed {
	s := c.g.cur.Load()
	out := make([]console.Feed, 0, len(s.feeds))
	for _, f := range s.feeds {
		h := f.Health()
		cf := console.Feed{FeedHealth: h,
			Silent: h.LastEvent.IsZero() || time.Since(h.LastEvent) > s.cfg.Posture.MaxAge.Std()}
		if st, ok := f.(interface{ Status() feeds.StreamStatus }); ok {
			ss := st.Status()
			cf.Stream = &ss
		}
		out = append(out, cf)
	}
	return out
}

// Certificates implements [console.Gateway].
func (c consoleSource) Certificates() []console.Certificate {
	s := c.g.cur.Load()
	var out []console.Certificate
	if s.server != nil {
		for _, l := range s.server.Status().Certificates {
			out = append(out, console.Certificate{Kind: "server", Name: strings.Join(l.Names, ", "), NotAfter: l.NotAfter, Detail: l.Source})
		}
	}
	if s.devices != nil {
		st := s.devices.Status()
		for _, ca := range st.CAs {
			out = append(out, console.Certificate{Kind: "device CA", Name: ca.Name, NotAfter: ca.NotAfter, Detail: "OCSP " + ca.OCSP})
		}
		for _, crl := range st.CRLs {
			detail := "next update"
			if crl.Stale {
				detail = "stale"
			}
			out = append(out, console.Certificate{Kind: "CRL", Name: crl.Issuer, NotAfter: crl.NextUpdate, Detail: detail})
		}
	}
	return out
}

// Explain implements [console.Gateway]: the input a decision record
// describes, gathered and decided as `portcullis explain` does it, under
// the running configuration.
func (c consoleSource) Explain(q console.Query) (console.Explanation, error) {
	s := c.g.cur.Load()
	res := s.byName[q.Resource]
	if res == nil {
		return console.Explanation{}, fmt.Errorf("no resource named %q in the running configuration", q.Resource)
	}
	in := enforcement.Input{Now: time.Now(), Request: enforcement.Request{Method: q.Method, Host: q.Host, Path: q.Path, Protocol: "HTTP/2.0"}}
	if q.DeviceID != "" {
		in.Cert, in.Device = enforcement.CertValid, &certs.DeviceIdentity{CA: q.DeviceCA, DeviceID: q.DeviceID, User: q.User}
	}
	if q.User != "" {
		in.Subject = &enforcement.Subject{UserID: q.User, Email: q.User, IdP: "explain", SessionID: "explain"}
		if in.Device != nil && res.policy.Login() == enforcement.LoginNone {
			in.Subject.IdP = "device-certificate"
		}
	}
	enforcement.Gather(c.g.store, &in)
	d := enforcement.Decide(res.policy, &in)
	out := console.Explanation{Verdict: d.Verdict.String(), Reason: string(d.Reason), Rule: d.Rule, Message: d.Reason.Message()}
	if d.Verdict == enforcement.Remediate || d.Verdict == enforcement.Deny {
		out.Remediation = res.cfg.Remediation
	}
	out.Inputs = describeInput(&in)
	return out, nil
}

// describeInput says, one line each, what Gather found.
func describeInput(in *enforcement.Input) []string {
	var out []string
	if in.Posture != nil {
		for _, p := range in.Posture.Records {
			out = append(out, fmt.Sprintf("posture from %s: %s, threat %s, state %s, managed %t, observed %s",
				p.Source, p.Compliance, p.Threat, p.State, p.Managed, p.ObservedAt.UTC().Format(time.RFC3339)))
		}
	} else if in.Device != nil {
		out = append(out, "no posture record for the device")
	}
	if in.Risk != nil {
		out = append(out, fmt.Sprintf("user risk %s from %s, observed %s", in.Risk.Level, in.Risk.Source, in.Risk.ObservedAt.UTC().Format(time.RFC3339)))
	}
	for _, r := range []struct {
		bit  enforcement.Revocation
		what string
	}{{enforcement.RevokedDevice, "the device is revoked"}, {enforcement.RevokedUser, "the user is revoked"}, {enforcement.RevokedSession, "the session is revoked"}} {
		if in.Revoked&r.bit != 0 {
			out = append(out, r.what)
		}
	}
	return out
}

var _ console.Store = (*posture.DB)(nil)

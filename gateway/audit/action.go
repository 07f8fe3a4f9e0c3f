package audit

import "time"

// Action is something an operator did by hand through the admin console:
// a revocation, or closing a live request. It is written to the decision
// log beside the decision records (msg "admin_action"), so the SIEM sees
// who cut whom off, and why.
type Action struct {
	Time     time.Time // zero means when WriteAction was called
	Operator string    // who did it: the signed-in operator's user id, or "admin-token"
	IdP      string    // how the operator signed in: "token", or an identity provider's name
	Action   string    // "revoke_user", "revoke_device", "revoke_session", "close_request"
	Target   string    // what it was done to: a user id, "ca/device id", a session id, a request id
	Reason   string    // the operator's words, if any
	Result   string    // what came of it: the store's outcome, "closed", "not_found", or "error"
	RemoteIP string    // the operator's address
}

// WriteAction logs a. Like [Log.Write] it never blocks on I/O. Actions
// are not sent to subscribers: they are the subscribers' own doing.
func (l *Log) WriteAction(a *Action) {
	if l.closed.Load() {
		l.countClosed()
		return
	}
	now := l.now()
	t := a.Time
	if t.IsZero() {
		t = now
	}
	bp := bufPool.Get().(*[]byte)
	line := appendAction((*bp)[:0], a, t)
	l.queue(line, priDeny, t, "admin_action", a.Action, a.Result)
	*bp = line
	putBuf(bp)
}

// appendAction appends a as one JSON object (without a newline) to b.
// The keys and their order are fixed; docs/audit.md describes them.
func appendAction(b []byte, a *Action, t time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"WARN","msg":"admin_action"`...)
	b = appendField(b, "operator", a.Operator)
	b = appendField(b, "idp", a.IdP)
	b = appendField(b, "action", a.Action)
	b = appendField(b, "target", a.Target)
	b = appendField(b, "reason", a.Reason)
	b = appendField(b, "result", a.Result)
	b = appendField(b, "remote_ip", a.RemoteIP)
	return append(b, '}')
}

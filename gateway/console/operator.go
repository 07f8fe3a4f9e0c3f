package console

import (
	"context"
	"net/http"
)

// Operator is the signed-in user the gateway let through to the console
// host: its policy decided, with the admin groups, that this user may
// use the console.
type Operator struct {
	User    string // the user id, as decision records name it
	IdP     string // the provider that signed the user in ("corp", "saml:corp")
	Session string // the gateway login session's id; may be empty
}

type operatorKey struct{}

// WithOperator returns ctx carrying op, for [Console.HostHandler].
func WithOperator(ctx context.Context, op Operator) context.Context {
	return context.WithValue(ctx, operatorKey{}, op)
}

// operatorFrom returns the operator the gateway established for a request
// to the console host, and whether there is one. Requests to the admin
// listener never carry one.
func operatorFrom(ctx context.Context) (Operator, bool) {
	op, ok := ctx.Value(operatorKey{}).(Operator)
	return op, ok && op.User != "" && op.IdP != ""
}

// HostHandler serves the console on the console host (admin.console.host)
// to the operator the gateway put in each request's context with
// [WithOperator], after its policy allowed the request. Such an operator
// needs no further sign-in: the console gives them a session of their
// own (for the CSRF token of its forms), bound to that login. A request
// without an operator is refused: the handler fails closed if the
// gateway did not decide.
func (c *Console) HostHandler() http.Handler { return c.host }

// hostOnly wraps the console's routes for the console host.
func (c *Console) hostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := operatorFrom(r.Context()); !ok {
			securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c.fail(w, r, nil, http.StatusForbidden, "The console host serves only users the gateway signed in.")
			})).ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostSession returns the console session of the operator on the console
// host: the cookie's, when it was made for this operator's login, or a
// new one, whose cookie is set on w. A POST that arrives with a new
// session fails its CSRF check, as it should: its form was made for
// another session.
func (c *Console) hostSession(w http.ResponseWriter, r *http.Request, s *session, op Operator) *session {
	if s != nil && s.Host && s.Operator == op.User && s.IdP == op.IdP && s.Login == op.Session {
		return s
	}
	s = newSession(op.User, op.IdP, c.now(), c.cfg.MaxAge())
	s.Host, s.Login = true, op.Session
	setCookie(w, r, c.seal.seal(s), c.cfg.MaxAge())
	return s
}

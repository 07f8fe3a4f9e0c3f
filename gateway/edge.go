package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"portcullis/gateway/audit"
	"portcullis/internal/conf"
	"portcullis/internal/deny"
)

// Reason codes of requests refused at the edge, before routing. They are
// stable: they appear in problem documents and decision records.
const (
	reasonInvalidHost      = "request.invalid_host"
	reasonInvalidPath      = "request.invalid_path"
	reasonMisdirected      = "request.misdirected"
	reasonMethodNotAllowed = "request.method_not_allowed"
)

// reservedPrefix is the path space the gateway answers itself on every
// host: feeds, login callbacks, and the assertion keys.
const (
	reservedPrefix    = "/.portcullis/"
	reservedWellKnown = "/.well-known/portcullis/"
)

// allowedMethods is the Allow header of a 405: every method a resource
// may be reached with. CONNECT needs a tunnel resource for the host the
// connection was made to, and there is none.
var allowedMethods = []string{"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}

// serveEdge applies the request-edge rules (docs/requests.md) before
// routing: it refuses a plain CONNECT, a Host that is not host[:port], a
// Host that would have been given another TLS configuration than the
// connection's SNI, and a path that servers read differently; it answers
// the gateway's own paths. Otherwise it rewrites r.Host and r.URL to their
// normal form, which the router matches and the upstream receives, and
// returns the path. It returns false when it answered the request.
func (g *Gateway) serveEdge(w http.ResponseWriter, r *http.Request, s *snapshot, reqID string, start time.Time) (string, bool) {
	if r.Method == http.MethodConnect && !isConnectWebsocket(r) {
		if t := s.tunnels.match(r); t != nil {
			g.serveTunnel(w, r, s, t, reqID, start)
			return "", false
		}
		w.Header()["Allow"] = allowedMethods
		g.refuseEdge(w, r, reqID, start, http.StatusMethodNotAllowed, reasonMethodNotAllowed,
			"CONNECT is answered only by tunnel resources, and none is configured for this host.")
		return "", false
	}
	name, authority, ok := normalizeHost(r.Host)
	if !ok {
		g.refuseEdge(w, r, reqID, start, http.StatusBadRequest, reasonInvalidHost,
			"The Host header (or :authority) is not a host name or IP address with an optional port.")
		return "", false
	}
	if misdirected(r, s, name) {
		g.refuseEdge(w, r, reqID, start, http.StatusMisdirectedRequest, reasonMisdirected,
			"This host needs a connection of its own: connect to it by name (TLS SNI) and retry.")
		return "", false
	}
	p, trailing, perr := normalizePath(r.URL)
	if perr == nil && trailing && s.router.match(name, p) != s.router.match(name, trimSegments(p)) {
		perr = errPathAmbiguous
	}
	if perr != nil {
		g.refuseEdge(w, r, reqID, start, http.StatusBadRequest, reasonInvalidPath, perr.detail)
		return "", false
	}
	r.Host = authority
	if r.URL.Path != p || r.URL.RawPath != "" {
		r.URL.Path, r.URL.RawPath = p, ""
	}
	if reserved(p) {
		if h := s.system[p]; h != nil {
			g.serveSystem(w, r, s, h)
		} else {
			// Never proxied: an upstream must not be reachable at, or
			// answer for, the gateway's own paths.
			g.refuseEdge(w, r, reqID, start, http.StatusNotFound, "route.not_found", "The gateway has nothing at this path.")
		}
		return "", false
	}
	return p, true
}

// reserved reports whether p lies in the gateway's own path space, in any
// case: an upstream that folds case must not answer for it either.
func reserved(p string) bool {
	return hasPrefixFold(p, reservedPrefix) || hasPrefixFold(p, reservedWellKnown) ||
		strings.EqualFold(p, strings.TrimSuffix(reservedPrefix, "/"))
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// misdirected reports whether the request's host would have been given a
// different TLS configuration (client-certificate mode) than the one its
// connection was made with, chosen by SNI. Without this check, a
// connection to a host that asks for no certificate could carry requests
// for one that requires it (Caddy's strict_sni_host). Requests whose host
// shares the connection's configuration, as with HTTP/2 connection reuse
// across names of one certificate, pass.
func misdirected(r *http.Request, s *snapshot, host string) bool {
	if r.TLS == nil {
		return false
	}
	sni := r.TLS.ServerName
	if sni == host {
		return false
	}
	l := listenerOf(r.Context(), s)
	if l == nil {
		// Not from one of our listeners (a handler called directly):
		// judge by every listener, failing closed.
		for _, l := range s.listeners {
			if l.forHost(sni) != l.forHost(host) {
				return true
			}
		}
		return false
	}
	return l.forHost(sni) != l.forHost(host)
}

type listenerKey struct{}

// withListener records which listener (an index into Config.Listen) a
// connection came in on; it is the listeners' ConnContext.
func withListener(ctx context.Context, i int) context.Context {
	return context.WithValue(ctx, listenerKey{}, i)
}

func listenerOf(ctx context.Context, s *snapshot) *listenerTLS {
	i, ok := ctx.Value(listenerKey{}).(int)
	if !ok || i < 0 || i >= len(s.listeners) {
		return nil
	}
	return s.listeners[i]
}

// refuseEdge answers a request refused at the edge with a problem
// document or deny page, and writes its decision record.
func (g *Gateway) refuseEdge(w http.ResponseWriter, r *http.Request, reqID string, start time.Time, status int, reason, detail string) {
	rec := audit.Record{Time: start, RequestID: reqID, Method: r.Method, Host: r.Host, Path: r.URL.Path,
		Protocol: protocol(r), RemoteIP: remoteIP(r.RemoteAddr), Verdict: "deny", Reason: reason, Status: status}
	deny.Write(w, r, deny.Info{Status: status, Reason: reason, Title: http.StatusText(status), Detail: detail, RequestID: reqID})
	rec.Total = time.Since(start)
	g.audit.Write(&rec)
}

// validateEdge checks a resource's request-edge settings.
func validateEdge(key string, r *ResourceConfig) error {
	var errs []error
	for i, u := range r.Upgrades {
		if u == "" || !isToken(u) {
			errs = append(errs, conf.Errorf(fmt.Sprintf("%s.upgrades[%d]", key, i), "invalid protocol token %q", u))
		}
	}
	return errors.Join(errs...)
}

package flow

import (
	"html/template"
	"net/http"
	"strings"

	"portcullis/internal/deny"
)

// ReasonCrossOrigin is the reason code of a logout POST refused as
// cross-origin.
const ReasonCrossOrigin = "request.cross_origin"

// Logout guards a logout endpoint against cross-site requests: ending a
// session is a state change, so it is a POST, refused when a browser
// says it comes from another origin (Sec-Fetch-Site, else Origin against
// Host: [http.CrossOriginProtection]); the session cookie's SameSite=Lax
// keeps it off cross-site POSTs as well. A GET or HEAD (a link, a typed
// address) gets a confirmation page whose form POSTs to the same URL,
// query included, and changes nothing. Other methods get 405.
func Logout(end http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deny.Write(w, r, deny.Info{Status: http.StatusForbidden, Reason: ReasonCrossOrigin, Title: "Sign-out refused",
			Detail: "Sign-out must be confirmed on this site."})
	}))
	post := cop.Handler(end)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			confirmLogout(w, r)
		case http.MethodPost:
			post.ServeHTTP(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			deny.Write(w, r, deny.Info{Status: http.StatusMethodNotAllowed, Reason: "request.method_not_allowed",
				Title: http.StatusText(http.StatusMethodNotAllowed), Detail: "Sign out with POST."})
		}
	})
}

var confirmPage = template.Must(template.New("").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign out</title><meta name="referrer" content="no-referrer"></head>
<body><h1>Sign out?</h1>
<form method="post" action="{{.}}"><button type="submit" id="logout-confirm">Sign out</button></form>
</body></html>
`))

// confirmLogout writes the confirmation page. Its form posts to the same
// path and query on this origin.
func confirmLogout(w http.ResponseWriter, r *http.Request) {
	action := r.URL.EscapedPath()
	if !strings.HasPrefix(action, "/") || strings.HasPrefix(action, "//") {
		action = "/" + strings.TrimLeft(action, "/")
	}
	if r.URL.RawQuery != "" {
		action += "?" + r.URL.RawQuery
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	if r.Method == http.MethodHead {
		return
	}
	confirmPage.Execute(w, template.URL(action))
}

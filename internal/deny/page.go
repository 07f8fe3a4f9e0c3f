package deny

import (
	"html/template"
	"io"
	"net/http"
)

// pageData is what the HTML template sees.
type pageData struct {
	Status     int
	StatusText string
	Title      string
	Detail     string
	Reason     string
	RequestID  string
	Resource   string
	ActionURL  string
	ActionText string
}

// renderHTML writes the deny page for info to w.
func renderHTML(w io.Writer, info *Info, status int) error {
	d := pageData{
		Status:     status,
		StatusText: http.StatusText(status),
		Title:      info.Title,
		Detail:     info.Detail,
		Reason:     info.Reason,
		RequestID:  info.RequestID,
		Resource:   info.Resource,
	}
	if d.Title == "" {
		d.Title = "Access denied"
		if status == http.StatusUnauthorized {
			d.Title = "Sign-in required"
		}
	}
	switch {
	case info.Remediation != "":
		d.ActionURL, d.ActionText = info.Remediation, "Fix this device"
	case info.LoginURL != "":
		d.ActionURL, d.ActionText = info.LoginURL, "Sign in"
	}
	return page.Execute(w, &d)
}

// page is self-contained: inline CSS only, no scripts, images, fonts or
// links other than the action, so it renders under a CSP of
// default-src 'none' and leaks nothing to third parties. html/template
// escapes every field and replaces a non-http(s) action URL with
// "#ZgotmplZ".
var page = template.Must(template.New("deny").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330}
main{max-width:36rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{margin:0 0 .25rem;font-size:1.5rem}
.status{margin:0 0 1.25rem;color:#6b7280;font-size:.9rem}
.detail{margin:0 0 1.5rem}
.action{display:inline-block;padding:.7rem 1.4rem;margin:0 0 1.5rem;background:#1d4ed8;color:#fff;border-radius:8px;text-decoration:none;font-weight:600}
.action:hover,.action:focus{background:#1e40af}
dl{margin:0;padding:1rem 0 0;border-top:1px solid #e5e7eb;font-size:.85rem;color:#4b5563;display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{font-weight:600}
dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}main{background:#1f2937;box-shadow:none}dl{border-color:#374151;color:#9ca3af}.status{color:#9ca3af}}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p class="status">{{.Status}} {{.StatusText}}{{if .Resource}} · {{.Resource}}{{end}}</p>
{{if .Detail}}<p class="detail">{{.Detail}}</p>
{{end}}{{if .ActionURL}}<p><a class="action" href="{{.ActionURL}}">{{.ActionText}}</a></p>
{{end}}<dl>
{{if .Reason}}<dt>Reason</dt><dd>{{.Reason}}</dd>
{{end}}{{if .RequestID}}<dt>Request ID</dt><dd>{{.RequestID}}</dd>
{{end}}</dl>
<p class="status">Quote the reason and request ID when you contact support.</p>
</main>
</body>
</html>
`))

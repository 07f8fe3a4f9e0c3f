package console

import (
	"fmt"
	"html/template"
	"net/url"
	"time"
)

// pages are the templates, each parsed with the layout.
var pages = []string{"login", "error", "overview", "live", "devices", "device", "users", "user", "decisions", "explain", "feeds"}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pages {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// badgeClass colours the values the pages show as badges. Anything not
// listed (a transmitter's stream status, say) is shown plain.
var badgeClass = map[string]string{
	"compliant": "ok", "not_compliant": "bad", "unknown": "warn",
	"none": "ok", "low": "ok", "medium": "warn", "high": "bad", "critical": "bad",
	"active": "ok", "unreported": "warn", "quarantined": "bad", "retired": "bad", "wiped": "bad", "lost": "bad",
	"enabled": "ok", "paused": "warn", "disabled": "bad",
	"allow": "ok", "deny": "bad", "login": "warn", "step_up": "warn", "remediate": "warn",
}

// badge renders s as a badge. s is escaped: it may come from a feed.
func badge(s string) template.HTML {
	class := badgeClass[s]
	if class == "" {
		class = "plain"
	}
	return template.HTML(`<span class="badge ` + class + `">` + template.HTMLEscapeString(s) + `</span>`)
}

var funcs = template.FuncMap{
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ts":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"day": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"clock": func(t time.Time) string {
		return t.UTC().Format("15:04:05.000")
	},
	"ago":     age,
	"badge":   badge,
	"verdict": badge,
	"size":    size,
	"perSecond": func(n uint64) string {
		return formatRate(float64(n) / chartSeconds)
	},
	"userURL": func(u string) string { return "/console/user?" + url.Values{"u": {u}}.Encode() },
	"deviceURL": func(ca, id string) string {
		return "/console/device?" + url.Values{"ca": {ca}, "id": {id}}.Encode()
	},
	"list": func(s ...string) []string { return s },
	"search": func(q listQuery, shows []string) map[string]any {
		return map[string]any{"Q": q.Q, "Show": q.Show, "Shows": shows}
	},
	"conns": func(cs []Conn, now time.Time, csrf, q string) map[string]any {
		return map[string]any{"Conns": cs, "Now": now, "CSRF": csrf, "Q": q}
	},
}

// size writes a byte count briefly.
func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

package gateway

import (
	"sort"
	"strings"
)

// router maps host and path to a resource. It is built once per snapshot
// and never modified, so lookups need no lock; match allocates nothing.
type router struct {
	exact map[string][]route // lower-case host → routes, longest prefix first
	wild  map[string][]route // "example.com" for "*.example.com"
	any   []route            // hosts: ["*"]
}

type route struct {
	prefix string // without a trailing slash; "" for "/"
	fold   bool   // match prefix in any case (ResourceConfig.CaseInsensitive)
	res    *resource
}

func newRouter(resources []*resource) *router {
	rt := &router{exact: map[string][]route{}, wild: map[string][]route{}}
	for _, res := range resources {
		for _, h := range res.cfg.Hosts {
			h = strings.TrimSuffix(strings.ToLower(h), ".") // as normalizeHost writes a request's host
			for _, p := range res.cfg.Paths {
				r := route{prefix: strings.TrimSuffix(p, "/"), fold: res.cfg.CaseInsensitive, res: res}
				switch {
				case h == "*":
					rt.any = append(rt.any, r)
				case strings.HasPrefix(h, "*."):
					rt.wild[h[2:]] = append(rt.wild[h[2:]], r)
				default:
					rt.exact[strings.Trim(h, "[]")] = append(rt.exact[strings.Trim(h, "[]")], r)
				}
			}
		}
	}
	byLen := func(rs []route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	}
	for _, rs := range rt.exact {
		byLen(rs)
	}
	for _, rs := range rt.wild {
		byLen(rs)
	}
	byLen(rt.any)
	return rt
}

// match finds the resource for host (a Host header or SNI, with or without
// port, any case) and a clean path. An exact host beats a wildcard, which
// beats "*"; within a host the longest prefix wins.
func (rt *router) match(host, path string) *resource {
	host = hostOnly(host)
	if hasUpper(host) {
		host = strings.ToLower(host) // rare: browsers and curl send lower case
	}
	if rs, ok := rt.exact[host]; ok {
		if r := matchPath(rs, path); r != nil {
			return r
		}
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if rs, ok := rt.wild[host[i+1:]]; ok {
			if r := matchPath(rs, path); r != nil {
				return r
			}
		}
	}
	return matchPath(rt.any, path)
}

func matchPath(rs []route, path string) *resource {
	for _, r := range rs {
		if r.prefix == "" {
			return r.res
		}
		if len(path) < len(r.prefix) || len(path) > len(r.prefix) && path[len(r.prefix)] != '/' {
			continue
		}
		if path[:len(r.prefix)] == r.prefix || r.fold && strings.EqualFold(path[:len(r.prefix)], r.prefix) {
			return r.res
		}
	}
	return nil
}

// hostOnly strips a port and IPv6 brackets from a Host header value.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		return h[:i]
	}
	return h
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

package deny

import "strings"

// PrefersJSON reports whether a client sending the given Accept header
// values should get an RFC 9457 problem document rather than an HTML page.
//
// It compares the quality the client gives to JSON (application/json or
// application/problem+json, or a wildcard covering them) with the quality
// it gives to text/html, each taken from the most specific matching media
// range as RFC 9110 §12.5.1 says. The higher quality wins. On a tie, HTML
// wins only if text/html was named explicitly and JSON was not: browsers
// list text/html first, while curl and most API clients send "*/*" or
// nothing, and a machine-readable body serves those better. No Accept
// header at all means JSON.
//
// It does not allocate.
func PrefersJSON(accept []string) bool {
	jsonQ, jsonSpec := -1, -1
	htmlQ, htmlSpec := -1, -1
	for _, v := range accept {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			mt, params, _ := strings.Cut(item, ";")
			mt = strings.TrimSpace(mt)
			if mt == "" {
				continue
			}
			q := qValue(params)
			if s := specificity(mt, "application", "json", "problem+json"); s > jsonSpec || (s == jsonSpec && s >= 0 && q > jsonQ) {
				// The most specific range decides; two equally specific
				// ranges (application/json and application/problem+json)
				// take the better of the two.
				jsonSpec, jsonQ = s, q
			}
			if s := specificity(mt, "text", "html", ""); s > htmlSpec {
				htmlSpec, htmlQ = s, q
			}
		}
	}
	if jsonSpec < 0 && htmlSpec < 0 {
		return true // no usable Accept: an API client
	}
	if jsonQ < 0 {
		jsonQ = 0
	}
	if htmlQ < 0 {
		htmlQ = 0
	}
	switch {
	case jsonQ > htmlQ:
		return true
	case htmlQ > jsonQ:
		return false
	case jsonQ == 0:
		return true // neither acceptable: RFC 9110 lets us send anything
	}
	return !(htmlSpec == 2 && jsonSpec < 2)
}

// specificity returns how specifically the media range mt matches
// typ/sub (or typ/alt when alt is set): 2 for an exact match, 1 for
// typ/*, 0 for */*, and -1 for no match.
func specificity(mt, typ, sub, alt string) int {
	t, s, ok := strings.Cut(mt, "/")
	if !ok {
		return -1
	}
	t, s = strings.TrimSpace(t), strings.TrimSpace(s)
	switch {
	case t == "*" && s == "*":
		return 0
	case !strings.EqualFold(t, typ):
		return -1
	case s == "*":
		return 1
	case strings.EqualFold(s, sub) || (alt != "" && strings.EqualFold(s, alt)):
		return 2
	}
	return -1
}

// qValue returns the q parameter of a media range's parameters in
// thousandths: 1000 when absent, 0 when malformed (a client that sends
// garbage gets no preference).
func qValue(params string) int {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		return parseQ(strings.TrimSpace(v))
	}
	return 1000
}

// parseQ parses an RFC 9110 qvalue ("0", "0.5", "1.000") into thousandths.
func parseQ(s string) int {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0
	}
	q := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return q
	}
	if s[1] != '.' || len(s) > 5 {
		return 0
	}
	scale := 100
	for _, c := range []byte(s[2:]) {
		if c < '0' || c > '9' {
			return 0
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0
	}
	return q
}

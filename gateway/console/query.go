package console

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a page's query string may hold.
const (
	maxParam = 2048   // bytes of one value
	maxPage  = 100000 // page numbers
	pageSize = 100    // rows per page
)

// A queryError says which parameter of a request was not acceptable; the
// page answers 400 with it.
type queryError struct {
	Param string
	Msg   string
}

func (e *queryError) Error() string { return "parameter " + strconv.Quote(e.Param) + ": " + e.Msg }

// params reads the named parameters of a query string: each at most once,
// at most maxParam bytes, valid UTF-8 without control characters. Names
// not asked for are an error too, so a mistyped filter is not silently
// ignored.
func params(v url.Values, names ...string) (map[string]string, error) {
	for k := range v {
		if !slices.Contains(names, k) {
			return nil, &queryError{k, "unknown parameter"}
		}
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		vals := v[name]
		switch {
		case len(vals) == 0:
			continue
		case len(vals) > 1:
			return nil, &queryError{name, "given more than once"}
		}
		s := vals[0]
		if len(s) > maxParam {
			return nil, &queryError{name, fmt.Sprintf("longer than %d bytes", maxParam)}
		}
		if !utf8.ValidString(s) {
			return nil, &queryError{name, "not valid UTF-8"}
		}
		if strings.IndexFunc(s, unicode.IsControl) >= 0 {
			return nil, &queryError{name, "contains a control character"}
		}
		out[name] = s
	}
	return out, nil
}

// listQuery is the query of a list page: a search, a filter from a fixed
// set, and a page number.
type listQuery struct {
	Q    string
	Show string
	Page int // from 1
}

// parseList reads q, show (one of shows; the first is the default) and
// page from v.
func parseList(v url.Values, shows ...string) (listQuery, error) {
	names := []string{"q", "page"}
	if len(shows) > 0 {
		names = append(names, "show")
	}
	p, err := params(v, names...)
	if err != nil {
		return listQuery{}, err
	}
	lq := listQuery{Q: strings.TrimSpace(p["q"]), Page: 1}
	if len(shows) > 0 {
		lq.Show = shows[0]
		if s, ok := p["show"]; ok {
			if !slices.Contains(shows, s) {
				return listQuery{}, &queryError{"show", "must be one of " + strings.Join(shows, ", ")}
			}
			lq.Show = s
		}
	}
	if s, ok := p["page"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			return listQuery{}, &queryError{"page", fmt.Sprintf("must be a number from 1 to %d", maxPage)}
		}
		lq.Page = n
	}
	return lq, nil
}

// matches reports whether any of fields contains the search q, ignoring
// case; an empty q matches everything.
func (lq *listQuery) matches(fields ...string) bool {
	if lq.Q == "" {
		return true
	}
	for _, f := range fields {
		if containsFold(f, lq.Q) {
			return true
		}
	}
	return false
}

// containsFold is strings.Contains ignoring case, without allocating.
// An ASCII needle is compared byte by byte, the common case and the one a
// scan of a hundred thousand devices needs fast.
func containsFold(s, sub string) bool {
	switch {
	case sub == "":
		return true
	case len(sub) > len(s):
		return false
	}
	ascii := true
	for i := 0; i < len(sub); i++ {
		if sub[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		for i := 0; i+len(sub) <= len(s); i++ {
			if strings.EqualFold(s[i:i+len(sub)], sub) {
				return true
			}
		}
		return false
	}
	first := lower(sub[0])
	for i := 0; i+len(sub) <= len(s); i++ {
		if lower(s[i]) != first {
			continue
		}
		j := 1
		for j < len(sub) && lower(s[i+j]) == lower(sub[j]) {
			j++
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// pager is one page of a list of n rows.
type pager struct {
	Page, Pages, Total int
	From, To           int // rows shown, from 1; From > To when none
	PrevURL, NextURL   string
}

// paginate returns the page of lq over n rows; link makes the URL of
// another page.
func paginate(lq listQuery, n int, link func(page int) string) pager {
	p := pager{Page: lq.Page, Total: n, Pages: max(1, (n+pageSize-1)/pageSize)}
	p.Page = min(p.Page, p.Pages)
	p.From = (p.Page-1)*pageSize + 1
	p.To = min(p.Page*pageSize, n)
	if p.Page > 1 {
		p.PrevURL = link(p.Page - 1)
	}
	if p.Page < p.Pages {
		p.NextURL = link(p.Page + 1)
	}
	return p
}

// bounds returns the slice indexes of the page's rows.
func (p pager) bounds() (int, int) {
	if p.From > p.To {
		return 0, 0
	}
	return p.From - 1, p.To
}

// listURL is the URL of a list page with its query.
func listURL(path string, lq listQuery, page int) string {
	v := url.Values{}
	if lq.Q != "" {
		v.Set("q", lq.Q)
	}
	if lq.Show != "" {
		v.Set("show", lq.Show)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

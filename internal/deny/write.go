package deny

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
)

// Header values shared by every response. Each slice has len == cap, so an
// Add by a later handler copies instead of writing into it.
var (
	hdrProblem  = []string{"application/problem+json"}
	hdrHTML     = []string{"text/html; charset=utf-8"}
	hdrNoStore  = []string{"no-store"}
	hdrNosniff  = []string{"nosniff"}
	hdrVary     = []string{"Accept"}
	hdrCSP      = []string{"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"}
	hdrReferrer = []string{"no-referrer"}
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled bounds the buffers kept for reuse, so one huge Detail does not
// pin memory.
const maxPooled = 64 << 10

// Write sends the denial described by info: a problem document if the
// request prefers JSON (see [PrefersJSON]), an HTML page otherwise. It
// sets Cache-Control: no-store, X-Content-Type-Options: nosniff and
// Vary: Accept, and for HTML a Content-Security-Policy that forbids every
// external resource. It must be called before anything else is written to
// w; its write error, if any, is the client's problem and is dropped.
func Write(w http.ResponseWriter, r *http.Request, info Info) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooled {
			bufPool.Put(buf)
		}
	}()

	status := info.status()
	h := w.Header()
	if PrefersJSON(r.Header.Values("Accept")) {
		buf.Write(appendProblem(buf.AvailableBuffer(), &info, status))
		h["Content-Type"] = hdrProblem
	} else {
		if err := renderHTML(buf, &info, status); err != nil {
			// The template is fixed and its data plain strings: this
			// cannot happen short of a bug. Say something rather than
			// send a half page.
			buf.Reset()
			buf.WriteString("Access denied.\n")
		}
		h["Content-Type"] = hdrHTML
		h["Content-Security-Policy"] = hdrCSP
		h["Referrer-Policy"] = hdrReferrer
	}
	h["Cache-Control"] = hdrNoStore
	h["X-Content-Type-Options"] = hdrNosniff
	h["Vary"] = hdrVary
	if status == http.StatusUnauthorized && info.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", info.WWWAuthenticate)
	}
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

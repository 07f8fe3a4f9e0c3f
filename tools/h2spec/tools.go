//go:build tools

// Package tools pins h2spec, the HTTP/2 conformance client the end-to-end
// tests run against the gateway's TLS listener. h2spec v2.2.1 predates Go
// modules, so `go install h2spec@v2.2.1` would resolve its dependencies at
// whatever is newest on the module proxy; this module records them.
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"

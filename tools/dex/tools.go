//go:build tools

// Package tools pins the Dex OIDC provider used by the end-to-end login tests.
// Build it with: go build -o ../../bin/dex github.com/dexidp/dex/cmd/dex
package tools

import _ "github.com/dexidp/dex/cmd/dex"

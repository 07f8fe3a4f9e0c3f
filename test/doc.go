// Package test holds Portcullis's end-to-end tests: they build the real
// binary, start it on loopback with a temporary configuration and state
// directory, and drive it with real clients (curl, nghttp, h2spec,
// quic-go's HTTP/3 client, a websocket client). A test whose peer program is
// missing skips on a laptop and fails when the CI environment variable is
// set: a skipped test proves nothing.
package test

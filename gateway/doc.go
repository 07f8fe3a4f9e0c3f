// Package gateway is the enforcement point itself: the HTTPS (HTTP/1.1,
// HTTP/2) and HTTP/3 listeners, per-SNI TLS with device-certificate
// authentication, the router, the handler chain that gathers an
// [enforcement.Input] and calls [enforcement.Decide], the reverse proxy that
// forwards allowed requests with identity headers, the deny pages, the
// admin listener, and reload and shutdown.
//
// A [Gateway] serves one immutable snapshot of the configuration at a time;
// Reload builds a new one completely and swaps it in with one pointer store,
// so a request sees one configuration from start to end.
package gateway

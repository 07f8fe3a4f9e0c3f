// Package tunnel is the gateway's tunnel endpoint and the client side of
// `portcullis connect`: plain CONNECT for TCP over HTTP/1.1 (hijacked),
// HTTP/2 and HTTP/3 (one stream per tunnel).
//
// The gateway owns the request path (routing by proxy host, gathering
// identity and posture, [enforcement.Decide], the live registry and the
// decision records); this package owns what is particular to tunnels:
// the `tunnels:` configuration, the CONNECT target parser, destination
// policy on resolved addresses, the byte pump with its timeouts, the
// per-user limit, the metrics, Proxy-Status (RFC 9209), and the client.
//
// CONNECT-UDP (RFC 9298) and CONNECT-IP (RFC 9484) are not built yet:
// their protocols are refused by configuration validation.
package tunnel

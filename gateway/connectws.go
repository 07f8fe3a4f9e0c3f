package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"

	"portcullis/internal/deny"
)

// isConnectWebsocket reports whether r opens a websocket with extended
// CONNECT: over HTTP/2 (RFC 8441), where Go's server delivers the
// :protocol pseudo-header as a header of that name, or over HTTP/3 (RFC
// 9220), where quic-go's server puts it in Proto.
func isConnectWebsocket(r *http.Request) bool {
	if r.Method != http.MethodConnect {
		return false
	}
	switch r.ProtoMajor {
	case 2:
		return strings.EqualFold(r.Header.Get(":protocol"), "websocket")
	case 3:
		return strings.EqualFold(r.Proto, "websocket")
	}
	return false
}

// protocol is the request's HTTP version as records and policies name
// it: "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0". quic-go's server puts an
// extended CONNECT's :protocol ("websocket") in Proto, so HTTP/3 is named
// by ProtoMajor.
func protocol(r *http.Request) string {
	if r.ProtoMajor == 3 {
		return "HTTP/3.0"
	}
	return r.Proto
}

// websocketGUID is RFC 6455's magic value for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// hopHeaders are the HTTP/1.1 hop-by-hop headers, which an extended
// CONNECT request must not carry to the upstream as they came.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// proxyConnectWebsocket carries a websocket the client opened with
// extended CONNECT over HTTP/2 or HTTP/3 to the upstream as an HTTP/1.1
// Upgrade (RFC 6455), which is
// what applications serve, and copies the websocket frames both ways:
// they are the same bytes on either side once the handshakes are done.
// The request's context is the live registry's, so a re-evaluation that
// denies it closes the upstream connection and ends the stream.
func (g *Gateway) proxyConnectWebsocket(w http.ResponseWriter, r *http.Request, res *resource) {
	ctx := r.Context()
	out := r.Clone(ctx)
	out.Method = http.MethodGet
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Body, out.ContentLength, out.RequestURI = nil, 0, ""
	h := out.Header
	h.Del(":protocol")
	for _, k := range hopHeaders {
		h.Del(k)
	}
	// What ReverseProxy removes before its Rewrite: the gateway is the edge.
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(k)
	}
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Key", key)
	if h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", "13")
	}
	// The same upstream URL, Host and Forwarded headers as every other
	// request of this resource.
	res.proxy.Rewrite(&httputil.ProxyRequest{In: r, Out: out})

	resp, err := res.transport.RoundTrip(out)
	if err != nil {
		status, reason := upstreamStatus(ctx, err)
		if status == 499 {
			return
		}
		logUpstreamError(g.log, r, res.name, err)
		deny.Write(w, r, deny.Info{Status: status, Reason: reason, Title: http.StatusText(status),
			Detail: upstreamDetail(status), RequestID: requestID(r), Resource: res.name})
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The application refused the websocket: pass its answer on.
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		for _, k := range hopHeaders {
			w.Header().Del(k)
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	up, ok := resp.Body.(io.ReadWriteCloser)
	sum := sha1.Sum([]byte(key + websocketGUID))
	if !ok || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		resp.Body.Close()
		g.log.Warn("upstream switched protocols without a valid websocket handshake", "resource", res.name,
			"request_id", requestID(r))
		deny.Write(w, r, deny.Info{Status: http.StatusBadGateway, Reason: "upstream.unavailable",
			Title: http.StatusText(http.StatusBadGateway), Detail: upstreamDetail(http.StatusBadGateway),
			RequestID: requestID(r), Resource: res.name})
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()

	for _, k := range []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	// Client to upstream; it ends when the client ends its stream or the
	// upstream connection is closed below.
	go func() {
		io.Copy(up, r.Body)
		up.Close()
	}()
	// Upstream to client, flushed frame by frame.
	bp := bufPool.Get()
	defer bufPool.Put(bp)
	for {
		n, err := up.Read(bp)
		if n > 0 {
			if _, werr := w.Write(bp[:n]); werr != nil || rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// bufPool lends the 32 KiB buffers the reverse proxy copies bodies with.
var bufPool = &bytePool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bytePool struct{ p sync.Pool }

func (b *bytePool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bytePool) Put(x []byte) { b.p.Put(&x) }

// upstreamKey is the context key under which the handler leaves the
// upstream's start time for the proxy's error handler.
type upstreamErrKey struct{}

// newProxy builds the reverse proxy of one resource. The transport keeps
// many idle connections to the upstream (a proxy under load opens far more
// than net/http's default of two), never compresses, and bounds dialing and
// the wait for response headers.
func newProxy(rc *ResourceConfig, target string, cfg *Config, onError func(http.ResponseWriter, *http.Request, error)) (*httputil.ReverseProxy, http.RoundTripper, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil, // never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: rc.Timeouts.Dial.Std(), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: rc.Timeouts.ResponseHeader.Std(),
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
	switch u.Scheme {
	case "h2c":
		u.Scheme = "http"
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	case "https":
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: rc.UpstreamTLS.ServerName}
		if rc.UpstreamTLS.CAFile != "" {
			pem, err := os.ReadFile(rc.UpstreamTLS.CAFile.String())
			if err != nil {
				return nil, nil, fmt.Errorf("reading upstream CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("upstream CA %s holds no PEM certificate", rc.UpstreamTLS.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
		tr.ForceAttemptHTTP2 = true
	}
	preserveHost := rc.PreserveHost == nil || *rc.PreserveHost
	rules := newHeaderRules(cfg.Headers.Strip, rc.Upgrades)
	rp := &httputil.ReverseProxy{
		// Rewrite runs after ReverseProxy removed the hop-by-hop headers
		// (those named in Connection included) and the client's
		// forwarding headers: what it sets reaches the upstream as set.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			if preserveHost {
				pr.Out.Host = pr.In.Host
			}
			e := liveEntryOf(pr.In)
			setForwarded(pr, e)
			rules.rewrite(pr, e)
		},
		Transport:  tr,
		BufferPool: bufPool,
		// ReverseProxy flushes at once for streaming responses (SSE, and
		// any response of unknown length); others are copied in bulk.
		FlushInterval: 0,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler:  onError,
	}
	return rp, tr, nil
}

// setForwarded sets X-Forwarded-For/-Host/-Proto and RFC 7239 Forwarded.
// The gateway is the edge: what clients sent in these headers was removed
// by ReverseProxy's Rewrite contract and is never passed on. The host is
// the one the edge normalised (see normalizeHost), so it cannot carry a
// second element or parameter. The values are the connection's, made on
// its first request to a host (see [connInfo.forwarded]); e is the
// request's live entry, nil when the handler did not proxy it.
func setForwarded(pr *httputil.ProxyRequest, e *liveEntry) {
	var fv *forwardedValues
	if e != nil && e.fwd != nil {
		fv = e.fwd
	} else {
		fv = newForwardedValues(pr.In.RemoteAddr, pr.In.Host)
	}
	v := fv.vals[:]
	h := pr.Out.Header
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Forwarded-Host"] = v[1:2:2]
	h["X-Forwarded-Proto"] = v[2:3:3]
	h["Forwarded"] = v[3:4:4]
}

// forwardedValues are the forwarding headers' values for one client
// address and host. They are never changed once made, and the outbound
// header slices of every request that uses them point into vals.
type forwardedValues struct {
	remoteAddr, host string
	vals             [4]string // X-Forwarded-For, -Host, -Proto, Forwarded
}

func newForwardedValues(remoteAddr, host string) *forwardedValues {
	ip := remoteIP(remoteAddr)
	return &forwardedValues{remoteAddr: remoteAddr, host: host,
		vals: [4]string{ip, host, "https", forwardedElement(ip, host)}}
}

// forwardedElement is the RFC 7239 element for=<ip>;host=<host>;proto=https.
// Each value is a token when it can be one and a quoted-string otherwise
// (§4); an IPv6 address is bracketed and so always quoted (§6).
func forwardedElement(ip, host string) string {
	var buf [128]byte // on the stack: the string below is the one allocation
	b := append(buf[:0], "for="...)
	if strings.IndexByte(ip, ':') >= 0 {
		b = append(b, `"[`...)
		b = appendQuotedText(b, ip)
		b = append(b, `]"`...)
	} else {
		b = appendForwardedValue(b, ip)
	}
	b = append(b, ";host="...)
	b = appendForwardedValue(b, host)
	b = append(b, ";proto=https"...)
	return string(b)
}

// appendForwardedValue appends v as a token, or as a quoted-string when
// it holds a character a token may not.
func appendForwardedValue(b []byte, v string) []byte {
	if v != "" && isToken(v) {
		return append(b, v...)
	}
	b = append(b, '"')
	b = appendQuotedText(b, v)
	return append(b, '"')
}

// appendQuotedText appends v for the inside of a quoted-string (RFC 9110
// §5.6.4): '"' and '\' are escaped; control characters, which a
// quoted-string cannot hold, are dropped.
func appendQuotedText(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 && c != '\t' || c == 0x7f:
		default:
			b = append(b, c)
		}
	}
	return b
}

// isToken reports whether v is an RFC 9110 token.
func isToken(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// upstreamStatus maps a proxy error to a status and reason code.
func upstreamStatus(ctx context.Context, err error) (int, string) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, "upstream.timeout"
	}
	if ctx.Err() != nil {
		return 499, "client.canceled"
	}
	return http.StatusBadGateway, "upstream.unavailable"
}

func logUpstreamError(l *slog.Logger, r *http.Request, res string, err error) {
	l.Warn("upstream request failed", "resource", res, "request_id", requestID(r), "error", err)
}

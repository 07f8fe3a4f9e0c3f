package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// Transport is how a [Client] reaches the gateway.
type Transport string

// The transports.
const (
	TransportH2   Transport = "h2"   // HTTP/2 over TLS over TCP
	TransportH3   Transport = "h3"   // HTTP/3 over QUIC
	TransportAuto Transport = "auto" // HTTP/3, falling back to HTTP/2 when it cannot connect
)

// Client opens tunnels through a gateway with plain CONNECT, many tunnels
// sharing one HTTP/2 or HTTP/3 connection, one stream each. It is the
// client side of `portcullis connect`. It is safe for concurrent use
// once its fields are set; Close releases its connections.
type Client struct {
	// Proxy is the gateway's host:port.
	Proxy string
	// ProxyH3 is the gateway's UDP host:port for HTTP/3; default Proxy.
	ProxyH3 string
	// TLS holds the roots to trust and the device certificate to
	// present. Its ServerName, if empty, is Proxy's host.
	TLS *tls.Config
	// Token, if set, is sent as `Proxy-Authorization: Bearer <Token>`.
	Token string
	// Transport is h2 (the default), h3, or auto.
	Transport Transport
	// H3Timeout bounds an auto client's HTTP/3 attempt before it falls
	// back to HTTP/2 (default 3s).
	H3Timeout time.Duration
	// OnFallback, if set, is told when an auto client falls back to
	// HTTP/2, and why.
	OnFallback func(err error)

	once sync.Once
	h2   *http2.Transport
	h3   *http3.Transport
	mu   sync.Mutex // guards fell
	fell bool       // auto fell back to HTTP/2; stays so
}

func (c *Client) init() {
	tc := c.TLS.Clone()
	if tc == nil {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(c.Proxy)
	}
	h2c := tc.Clone()
	h2c.NextProtos = []string{"h2"}
	c.h2 = &http2.Transport{TLSClientConfig: h2c, ReadIdleTimeout: 30 * time.Second}
	h3c := tc.Clone()
	h3c.NextProtos = []string{http3.NextProtoH3}
	c.h3 = &http3.Transport{TLSClientConfig: h3c, QUICConfig: &quic.Config{KeepAlivePeriod: 20 * time.Second, MaxIdleTimeout: 90 * time.Second}}
}

// Close closes the client's connections to the gateway. Tunnels open on
// them end.
func (c *Client) Close() error {
	c.once.Do(c.init)
	c.h2.CloseIdleConnections()
	return c.h3.Close()
}

// Used reports the transport the next tunnel will use.
func (c *Client) Used() Transport {
	switch c.Transport {
	case TransportH3:
		return TransportH3
	case TransportAuto:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.fell {
			return TransportH2
		}
		return TransportH3
	}
	return TransportH2
}

// Dial opens a tunnel to target ("host:port") and returns it as a
// connection: writes go to the destination, reads come from it, and
// CloseWrite ends the client's side (a half-close). A refusal is a
// *[DenyError]; a TLS failure a *[CertError].
func (c *Client) Dial(ctx context.Context, target string) (net.Conn, error) {
	c.once.Do(c.init)
	if _, err := ParseTarget(target); err != nil {
		return nil, fmt.Errorf("tunnel target %q: %w", target, err)
	}
	switch c.Used() {
	case TransportH3:
		if c.Transport != TransportAuto {
			return c.dial(ctx, c.h3, c.h3Proxy(), target)
		}
		timeout := c.H3Timeout
		if timeout <= 0 {
			timeout = 3 * time.Second
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := c.dial(hctx, c.h3, c.h3Proxy(), target)
		cancel()
		var de *DenyError
		if err == nil || errors.As(err, &de) || ctx.Err() != nil {
			return conn, err // connected: the gateway's answer stands
		}
		c.mu.Lock()
		c.fell = true
		c.mu.Unlock()
		if c.OnFallback != nil {
			c.OnFallback(err)
		}
	}
	return c.dial(ctx, c.h2, c.Proxy, target)
}

func (c *Client) h3Proxy() string {
	if c.ProxyH3 != "" {
		return c.ProxyH3
	}
	return c.Proxy
}

func (c *Client) dial(ctx context.Context, rt http.RoundTripper, proxy, target string) (net.Conn, error) {
	pr, pw := io.Pipe()
	req := (&http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Scheme: "https", Host: proxy},
		Host:   target,
		Header: http.Header{"Accept": {"application/problem+json"}},
		Body:   pr, ContentLength: -1,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, // quic-go: a plain CONNECT, no :protocol
	})
	if c.Token != "" {
		req.Header.Set("Proxy-Authorization", "Bearer "+c.Token)
	}
	// The request lives as long as the tunnel, not as long as ctx, which
	// only bounds the dial: stop watching ctx once the answer is in.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	resp, err := rt.RoundTrip(req.WithContext(rctx))
	if !stop() && err == nil {
		resp.Body.Close()
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		pw.Close()
		return nil, classify(err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		pw.Close()
		return nil, denyError(resp)
	}
	return &streamConn{body: resp.Body, pw: pw, cancel: cancel, proxy: proxy, target: target}, nil
}

// DenyError is the gateway's refusal of a tunnel: the status, the
// Proxy-Status entry with its reason code, and what the problem document
// said.
type DenyError struct {
	Status      int
	ProxyStatus ProxyStatus
	Detail      string
	Remediation string
	RequestID   string
}

func (e *DenyError) Error() string {
	s := fmt.Sprintf("tunnel refused: %d %s", e.Status, http.StatusText(e.Status))
	if e.ProxyStatus.Details != "" {
		s += ": " + e.ProxyStatus.Details
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Reason is the stable reason code of the refusal, from Proxy-Status
// (or the problem document when Proxy-Status is missing).
func (e *DenyError) Reason() string { return e.ProxyStatus.Details }

func denyError(resp *http.Response) *DenyError {
	e := &DenyError{Status: resp.StatusCode}
	if ps, err := ParseProxyStatus(resp.Header.Get("Proxy-Status")); err == nil {
		e.ProxyStatus = ps
	}
	var p struct {
		Detail      string `json:"detail"`
		Reason      string `json:"reason"`
		Remediation string `json:"remediation"`
		RequestID   string `json:"request_id"`
	}
	if b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); err == nil && json.Unmarshal(b, &p) == nil {
		e.Detail, e.Remediation, e.RequestID = p.Detail, p.Remediation, p.RequestID
		if e.ProxyStatus.Details == "" {
			e.ProxyStatus.Details = p.Reason
		}
	}
	return e
}

// CertError is a TLS failure on the way to the gateway: either side's
// certificate was not accepted.
type CertError struct {
	// Ours is true when the gateway refused the device certificate (or
	// its absence), false when the gateway's own certificate did not
	// verify.
	Ours bool
	Err  error
}

func (e *CertError) Error() string {
	if e.Ours {
		return "the gateway refused the TLS handshake: the device certificate is missing, not trusted, expired or revoked: " + e.Err.Error()
	}
	return "the gateway's certificate did not verify (check --ca and the proxy host name): " + e.Err.Error()
}

// Unwrap returns the TLS error.
func (e *CertError) Unwrap() error { return e.Err }

// classify turns a TLS failure into a *CertError.
func classify(err error) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return &CertError{Err: err}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return &CertError{Ours: true, Err: err} // a TLS alert from the gateway
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
		return &CertError{Ours: true, Err: err}
	}
	return err
}

// streamConn is one tunnel as a net.Conn: reads from the response body,
// writes to the request body.
type streamConn struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	proxy  string
	target string
	once   sync.Once
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.body.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.pw.Write(b) }

// CloseWrite ends the client's side of the tunnel; reads go on.
func (c *streamConn) CloseWrite() error { return c.pw.Close() }

// Close ends the tunnel.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.pw.CloseWithError(net.ErrClosed)
		c.body.Close()
		c.cancel()
	})
	return nil
}

func (c *streamConn) LocalAddr() net.Addr              { return tunnelAddr(c.proxy) }
func (c *streamConn) RemoteAddr() net.Addr             { return tunnelAddr(c.target) }
func (c *streamConn) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (c *streamConn) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (c *streamConn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

// tunnelAddr names an end of a tunnel.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tunnel" }
func (a tunnelAddr) String() string  { return string(a) }

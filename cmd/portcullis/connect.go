package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"portcullis/gateway/tunnel"
	"portcullis/internal/conf"
)

// forwards is the repeatable --forward flag: LISTEN=TARGET.
type forwards []forward

type forward struct{ listen, target string }

func (f *forwards) String() string { return "" }

func (f *forwards) Set(v string) error {
	listen, target, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want LISTEN_ADDR=TARGET_HOST:PORT, e.g. 127.0.0.1:2222=db.internal:5432")
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("listen address %q: want host:port", listen)
	}
	if _, err := tunnel.ParseTarget(target); err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	*f = append(*f, forward{listen, target})
	return nil
}

// cmdConnect is the tunnel client: each --forward listens locally and
// carries every connection it accepts through its own CONNECT tunnel.
func cmdConnect(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proxy := fs.String("proxy", "", "the gateway's tunnel endpoint, host:port (required); host is the tunnel resource's proxy host")
	var fwd forwards
	fs.Var(&fwd, "forward", "LISTEN=TARGET: carry connections to LISTEN (e.g. 127.0.0.1:2222) to TARGET (e.g. db.internal:5432); repeatable")
	certFile := fs.String("cert", "", "device certificate (PEM)")
	keyFile := fs.String("key", "", "device certificate's private key (PEM)")
	caFile := fs.String("ca", "", "CA bundle to verify the gateway with (default: the system roots)")
	tokenFile := fs.String("token-file", "", "file holding a bearer token for policies that need a user")
	h3 := fs.Bool("h3", false, "use HTTP/3 only")
	auto := fs.Bool("auto", false, "prefer HTTP/3, fall back to HTTP/2 when UDP is blocked")
	h3Addr := fs.String("h3-addr", "", "the gateway's UDP host:port when it differs from --proxy")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *proxy == "" || len(fwd) == 0 {
		fmt.Fprintln(stderr, "portcullis connect: --proxy and at least one --forward are required")
		return 2
	}
	if *h3 && *auto {
		fmt.Fprintln(stderr, "portcullis connect: --h3 and --auto exclude each other")
		return 2
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (*certFile == "") != (*keyFile == "") {
		fmt.Fprintln(stderr, "portcullis connect: --cert and --key go together")
		return 2
	}
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis connect: the device certificate cannot be used: %v\n", err)
			return 1
		}
		tc.Certificates = []tls.Certificate{c}
	}
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis connect: --ca: %v\n", err)
			return 1
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			fmt.Fprintf(stderr, "portcullis connect: --ca: no PEM certificate in %s\n", *caFile)
			return 1
		}
	}
	cl := &tunnel.Client{Proxy: *proxy, ProxyH3: *h3Addr, TLS: tc, Transport: tunnel.TransportH2}
	switch {
	case *h3:
		cl.Transport = tunnel.TransportH3
	case *auto:
		cl.Transport = tunnel.TransportAuto
		cl.OnFallback = func(err error) {
			fmt.Fprintf(stderr, "portcullis connect: HTTP/3 to %s failed (%v); using HTTP/2 from now on\n", h3Target(cl), err)
		}
	}
	if *tokenFile != "" {
		tok, err := conf.ReadSecretFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis connect: --token-file: %v\n", err)
			return 1
		}
		cl.Token = string(tok.Bytes())
	}
	defer cl.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lns []net.Listener
	for _, f := range fwd {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis connect: --forward %s: %v\n", f.listen, err)
			for _, l := range lns {
				l.Close()
			}
			return 1
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(fwd))
	report := newReporter(stderr)
	for i, f := range fwd {
		fmt.Fprintf(stdout, "forwarding %s to %s through %s (%s)\n", lns[i].Addr(), f.target, *proxy, cl.Used())
		wg.Go(func() {
			if err := cl.Forward(ctx, lns[i], f.target, func(err error) { report.refused(f.target, err) }); err != nil {
				errs <- err
				stop()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Fprintf(stderr, "portcullis connect: %v\n", err)
		return 1
	default:
		return 0
	}
}

// reporter prints why tunnels were refused, once per distinct reason in
// a row, so a client that retries does not flood the terminal.
type reporter struct {
	mu   sync.Mutex // guards w and last
	w    io.Writer
	last string
}

func newReporter(w io.Writer) *reporter { return &reporter{w: w} }

func (r *reporter) refused(target string, err error) {
	msg := describeTunnelError(target, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg == r.last {
		return
	}
	r.last = msg
	fmt.Fprintln(r.w, msg)
}

// describeTunnelError says what went wrong in words a user can act on.
func describeTunnelError(target string, err error) string {
	var de *tunnel.DenyError
	var ce *tunnel.CertError
	switch {
	case errors.As(err, &de):
		var b strings.Builder
		fmt.Fprintf(&b, "portcullis connect: the gateway refused the tunnel to %s: %s (%d)", target, de.Reason(), de.Status)
		if de.Detail != "" {
			fmt.Fprintf(&b, "\n  %s", de.Detail)
		}
		if de.Remediation != "" {
			fmt.Fprintf(&b, "\n  fix it at: %s", de.Remediation)
		}
		if de.RequestID != "" {
			fmt.Fprintf(&b, "\n  request id: %s", de.RequestID)
		}
		return b.String()
	case errors.As(err, &ce):
		return "portcullis connect: " + ce.Error()
	}
	return fmt.Sprintf("portcullis connect: tunnel to %s: %v", target, err)
}

func h3Target(c *tunnel.Client) string {
	if c.ProxyH3 != "" {
		return c.ProxyH3
	}
	return c.Proxy
}

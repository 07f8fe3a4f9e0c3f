// Command openload is an open-loop, fixed-rate load generator for the
// latency scenario of test/bench: it sends requests at the times a fixed
// rate schedules, whether or not earlier ones have been answered, and
// measures each from its scheduled time, so a slow server is charged for
// the requests that queue behind a stall (no coordinated omission, which
// closed-loop tools like wrk and h2load suffer from). It speaks HTTP/1.1
// or HTTP/2 over TLS, optionally with a client certificate.
//
// It is bounded in time (-d) and in count (-n), and prints one line:
//
//	requests= errors= rate= achieved= p50_ms= p99_ms= p999_ms= max_ms= late= proto=
//
// late counts requests sent more than a millisecond after their time
// because the generator itself fell behind; when it is more than a few
// percent, the numbers measure the client, not the server.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	var (
		target   = flag.String("url", "", "URL to GET (https)")
		proto    = flag.String("proto", "h1", "h1 or h2")
		rate     = flag.Float64("rate", 1000, "requests per second")
		dur      = flag.Duration("d", 10*time.Second, "how long to send")
		maxN     = flag.Int("n", 1_000_000, "at most this many requests")
		conns    = flag.Int("c", 64, "connections (HTTP/2: each carries many streams)")
		inflight = flag.Int("inflight", 4096, "at most this many requests outstanding; more are counted as errors")
		cert     = flag.String("cert", "", "client certificate (PEM)")
		key      = flag.String("key", "", "client key (PEM)")
		cacert   = flag.String("cacert", "", "CA to verify the server with")
		insecure = flag.Bool("k", false, "do not verify the server")
		addr     = flag.String("addr", "", "dial this address instead of the URL's")
		timeout  = flag.Duration("timeout", 10*time.Second, "per-request timeout")
		hdrs     headers
	)
	flag.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	flag.Parse()
	if *target == "" || *rate <= 0 || (*proto != "h1" && *proto != "h2") {
		fmt.Fprintln(os.Stderr, "openload: -url, a positive -rate and -proto h1|h2 are required")
		os.Exit(2)
	}
	tc, err := tlsConfig(*cert, *key, *cacert, *insecure)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openload:", err)
		os.Exit(1)
	}
	clients := newClients(*proto, *conns, tc, *addr, *timeout)
	req, err := http.NewRequest(http.MethodGet, *target, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openload:", err)
		os.Exit(2)
	}
	for _, h := range hdrs {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "openload: header %q is not 'Name: value'\n", h)
			os.Exit(2)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	// Warm the connections up, so the first second does not measure
	// handshakes.
	for _, c := range clients {
		if err := do(c, req); err != nil {
			fmt.Fprintln(os.Stderr, "openload: warm-up request:", err)
			os.Exit(1)
		}
	}
	r := run(clients, req, *rate, *dur, *maxN, *inflight)
	fmt.Println(r.line(*proto))
}

func tlsConfig(cert, key, cacert string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("reading CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", cacert)
		}
	}
	return tc, nil
}

// newClients makes the clients requests are spread over: for HTTP/1.1
// one transport of n connections, for HTTP/2 n transports of one
// connection each (net/http opens one per host and multiplexes on it).
func newClients(proto string, n int, tc *tls.Config, addr string, timeout time.Duration) []*http.Client {
	mk := func(conns int) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr := &http.Transport{
			TLSClientConfig:     tc.Clone(),
			MaxConnsPerHost:     conns,
			MaxIdleConnsPerHost: conns,
			DisableCompression:  true,
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				if addr != "" {
					a = addr
				}
				return d.DialContext(ctx, network, a)
			},
		}
		tr.Protocols = new(http.Protocols)
		if proto == "h2" {
			tr.Protocols.SetHTTP2(true)
		} else {
			tr.Protocols.SetHTTP1(true)
		}
		return &http.Client{Transport: tr, Timeout: timeout}
	}
	if proto == "h1" {
		return []*http.Client{mk(n)}
	}
	cs := make([]*http.Client, n)
	for i := range cs {
		cs[i] = mk(1)
	}
	return cs
}

func do(c *http.Client, req *http.Request) error {
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

type result struct {
	rate     float64
	elapsed  time.Duration
	lat      []time.Duration // of the requests answered 200
	errors   int64
	late     int64
	requests int
}

// run sends requests at rate for d (at most maxN of them), each in its
// own goroutine, and waits for the last answer.
func run(clients []*http.Client, req *http.Request, rate float64, d time.Duration, maxN, inflight int) *result {
	n := min(maxN, int(rate*d.Seconds()))
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var errors, late atomic.Int64
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	interval := float64(time.Second) / rate
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else if wait < -time.Millisecond {
			late.Add(1)
		}
		select {
		case sem <- struct{}{}:
		default:
			errors.Add(1) // over the in-flight bound: the server is not keeping up
			continue
		}
		wg.Add(1)
		go func(i int, c *http.Client) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := do(c, req); err != nil {
				errors.Add(1)
				return
			}
			lat[i], ok[i] = time.Since(due), true
		}(i, clients[i%len(clients)])
	}
	wg.Wait()
	r := &result{rate: rate, elapsed: time.Since(start), errors: errors.Load(), late: late.Load(), requests: n}
	for i := range lat {
		if ok[i] {
			r.lat = append(r.lat, lat[i])
		}
	}
	slices.Sort(r.lat)
	return r
}

// quantile is the q-quantile of the sorted latencies, in milliseconds.
func (r *result) quantile(q float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	i := min(len(r.lat)-1, int(q*float64(len(r.lat))))
	return float64(r.lat[i]) / float64(time.Millisecond)
}

func (r *result) line(proto string) string {
	return fmt.Sprintf("requests=%d errors=%d rate=%.0f achieved=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f late=%d proto=%s",
		r.requests, r.errors, r.rate, float64(len(r.lat))/r.elapsed.Seconds(),
		r.quantile(0.50), r.quantile(0.99), r.quantile(0.999), r.quantile(1), r.late, proto)
}

package gateway

import (
	"context"
	"hash/maphash"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/gateway/audit"
	"portcullis/internal/deny"
)

// Reason codes of the limits. They are stable: decision records, problem
// documents and the portcullis_limit_rejections_total metric carry them.
const (
	// ReasonBodyTimeout: the request body arrived too slowly (408).
	ReasonBodyTimeout = "client.body_timeout"
	// ReasonConnectionLimit: the client connection already has
	// limits.upstream.per_connection requests at upstreams (429).
	ReasonConnectionLimit = "client.connection_limit"
	// ReasonIPLimit: the client address already has limits.upstream.per_ip
	// requests at upstreams (429).
	ReasonIPLimit = "client.ip_limit"
	// ReasonRapidReset: the connection was ended because its client reset
	// more than limits.streams.max_resets streams within the window.
	ReasonRapidReset = "client.rapid_reset"
	// reasonCanceled: the client gave up on the request before it was
	// proxied (the status is nginx's 499).
	reasonCanceled = "client.canceled"
)

// limiter holds what the limits count across requests: concurrent
// upstream requests per client address. It outlives configuration
// snapshots, so a reload changes the caps, never the counts. It is safe
// for concurrent use.
type limiter struct {
	seed       maphash.Seed
	shards     [16]ipShard
	rejections *prometheus.CounterVec
}

type ipShard struct {
	mu sync.Mutex       // guards m
	m  map[string]int32 // client address key → requests at upstreams
	_  [40]byte         // keep shards on separate cache lines
}

func newLimiter(reg prometheus.Registerer) *limiter {
	l := &limiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[string]int32{}
	}
	l.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_limit_rejections_total",
		Help: "Requests refused or aborted, and connections ended, by a limit, by reason.",
	}, []string{"reason"})
	reg.MustRegister(l.rejections)
	return l
}

func (l *limiter) shard(key string) *ipShard {
	return &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
}

// acquireIP counts one more upstream request for key, unless key already
// has max of them.
func (l *limiter) acquireIP(key string, max int) bool {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.m[key]
	if int(n) >= max {
		return false
	}
	sh.m[key] = n + 1
	return true
}

func (l *limiter) releaseIP(key string) {
	sh := l.shard(key)
	sh.mu.Lock()
	if n := sh.m[key] - 1; n > 0 {
		sh.m[key] = n
	} else {
		delete(sh.m, key)
	}
	sh.mu.Unlock()
}

// ipCount is how many upstream requests key holds now; for tests.
func (l *limiter) ipCount(key string) int {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.m[key])
}

// clientKey is what the per-address limit counts by: the IP, or for IPv6
// its /64, since one host commonly holds a whole /64.
func clientKey(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a.Is4In6() {
		return a.Unmap().String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// connLimits is the limits' state of one client connection. The
// listeners' ConnContext puts one in every connection's context.
type connLimits struct {
	upstream atomic.Int32 // requests of this connection at upstreams

	mu          sync.Mutex // guards the reset window
	windowStart time.Time
	resets      int

	// end ends the connection for too many resets: GOAWAY with
	// ENHANCE_YOUR_CALM on HTTP/2, CONNECTION_CLOSE with
	// H3_EXCESSIVE_LOAD on HTTP/3. It is set before the connection's
	// first request and never changes; nil for HTTP/1.1.
	end   func()
	ended atomic.Bool
}

type connLimitsKey struct{}

// withConnLimits gives a connection's context its limits state; end may
// be set later, before the connection serves its first request.
func withConnLimits(ctx context.Context, end func()) context.Context {
	return context.WithValue(ctx, connLimitsKey{}, &connLimits{end: end})
}

func connLimitsFrom(ctx context.Context) *connLimits {
	cl, _ := ctx.Value(connLimitsKey{}).(*connLimits)
	return cl
}

// countReset counts one stream the client reset at now and reports
// whether the connection is now over max resets within window.
func (cl *connLimits) countReset(now time.Time, max int, window time.Duration) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if now.Sub(cl.windowStart) >= window {
		cl.windowStart, cl.resets = now, 0
	}
	cl.resets++
	return cl.resets > max
}

// streamReset is called for every stream a client resets. Past the
// configured threshold it ends the connection, once.
func (g *Gateway) streamReset(cl *connLimits, remote string) {
	if cl == nil {
		return
	}
	st := &g.cur.Load().cfg.Limits.Streams
	if !cl.countReset(time.Now(), st.MaxResets, st.ResetWindow.Std()) || cl.end == nil || !cl.ended.CompareAndSwap(false, true) {
		return
	}
	g.limiter.rejections.WithLabelValues(ReasonRapidReset).Inc()
	g.log.Warn("ending a connection that reset too many streams", "reason", ReasonRapidReset,
		"remote_ip", remoteIP(remote), "max_resets", st.MaxResets, "window", st.ResetWindow.String())
	cl.end()
}

// admission is one proxied request's hold on the limits. The zero value
// holds nothing.
type admission struct {
	g     *Gateway
	conn  *connLimits
	ipKey string
	body  *bodyGuard
}

// admit runs just before a request allowed by policy is proxied. It
// refuses a request whose client has already gone (no upstream request,
// one record), or one over the per-connection or per-address cap of
// concurrent upstream requests (429 with Retry-After), and records either.
// When it admits, the caller must call release when the request is over,
// however it ends (defer it), and finish before writing the record. It
// also puts r's body, if any, under the body timeouts.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, s *snapshot, rec *audit.Record) (admission, bool) {
	if r.Context().Err() != nil {
		// Reset or closed while the decision was made: an upstream
		// request would be wasted.
		rec.Status, rec.Reason = 499, reasonCanceled
		rec.Total = time.Since(rec.Time)
		g.audit.Write(rec)
		return admission{}, false
	}
	lim := &s.cfg.Limits
	a := admission{g: g}
	if cl := connLimitsFrom(r.Context()); cl != nil {
		if int(cl.upstream.Add(1)) > lim.Upstream.PerConnection {
			cl.upstream.Add(-1)
			g.rejectLimit(w, r, rec, ReasonConnectionLimit, "limits.upstream.per_connection",
				"This connection has too many requests in progress. Try again shortly.")
			return admission{}, false
		}
		a.conn = cl
	}
	key := clientKey(rec.RemoteIP)
	if !g.limiter.acquireIP(key, lim.Upstream.PerIP) {
		a.release()
		g.rejectLimit(w, r, rec, ReasonIPLimit, "limits.upstream.per_ip",
			"Too many requests from your address are in progress. Try again shortly.")
		return admission{}, false
	}
	a.ipKey = key
	if r.Body != nil && r.Body != http.NoBody {
		a.body = newBodyGuard(w, r.Body, r.ContentLength, &lim.Body)
		r.Body = a.body
	}
	return a, true
}

// release gives back what admit took.
func (a *admission) release() {
	if a.conn != nil {
		a.conn.upstream.Add(-1)
		a.conn = nil
	}
	if a.ipKey != "" {
		a.g.limiter.releaseIP(a.ipKey)
		a.ipKey = ""
	}
}

// finish runs when the proxy is done with a request. If the body
// timeouts cut the request off, it answers 408 when nothing else was
// sent (the proxy's error handler leaves that to it: on HTTP/1.1 the
// server cancels the request as the read fails, and the proxy sees only
// that), and makes the record say why.
func (a *admission) finish(w http.ResponseWriter, r *http.Request, rec *audit.Record) {
	if a.body == nil || !a.body.timedOut.Load() {
		return
	}
	rec.Reason, rec.Rule = ReasonBodyTimeout, a.body.rule()
	if rec.Status == 0 {
		writeBodyTimeout(w, r, rec.Resource)
		rec.Status = http.StatusRequestTimeout
	}
	a.g.limiter.rejections.WithLabelValues(ReasonBodyTimeout).Inc()
}

// rejectLimit answers 429 for a request over a concurrency cap, and
// records it as denied by that limit.
func (g *Gateway) rejectLimit(w http.ResponseWriter, r *http.Request, rec *audit.Record, reason, rule, detail string) {
	g.limiter.rejections.WithLabelValues(reason).Inc()
	rec.Verdict, rec.Reason, rec.Rule, rec.Status = "deny", reason, rule, http.StatusTooManyRequests
	w.Header().Set("Retry-After", "1")
	deny.Write(w, r, deny.Info{Status: http.StatusTooManyRequests, Reason: reason, Title: http.StatusText(http.StatusTooManyRequests),
		Detail: detail, RequestID: rec.RequestID, Resource: rec.Resource})
	rec.Total = time.Since(rec.Time)
	g.audit.Write(rec)
}

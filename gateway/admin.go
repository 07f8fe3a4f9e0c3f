package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// adminHandler serves the operator endpoints. It listens on loopback by
// default; nothing here is for clients.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s := g.cur.Load()
		detail := map[string]any{
			"listening":    g.ready.Load(),
			"config":       s != nil,
			"certificates": s != nil && s.server != nil,
		}
		// A shared store is ready once its copy was loaded; cut off from
		// Redis afterwards, the replica decides from the copy until
		// posture is stale.
		storeReady, storeDetail := g.storeStatus()
		detail["posture_store"] = storeReady
		ready := true
		for _, v := range detail {
			ready = ready && v.(bool)
		}
		detail["ready"] = ready
		detail["store"] = storeDetail
		// Feeds report their health; a silent one (no event for longer
		// than posture.max_age) does not make the gateway unready — stale
		// posture already denies — but an operator must see it.
		if s != nil {
			var fs []map[string]any
			for _, f := range s.feeds {
				h := f.Health()
				silent := h.LastEvent.IsZero() || time.Since(h.LastEvent) > s.cfg.Posture.MaxAge.Std()
				fs = append(fs, map[string]any{"name": h.Name, "type": h.Type, "last_event": h.LastEvent,
					"silent": silent, "accepted": h.Accepted, "rejected": h.Rejected, "last_error": h.LastError})
			}
			detail["feeds"] = fs
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(detail)
	})
	// Certificate metrics belong to the current configuration: gather them
	// from whichever snapshot is live at scrape time, so a reload never
	// leaves the old generation's collectors behind.
	certMetrics := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		s := g.cur.Load()
		reg := prometheus.NewRegistry()
		if s.server != nil {
			if err := s.server.RegisterMetrics(reg); err != nil {
				return nil, err
			}
		}
		if s.devices != nil {
			if err := s.devices.RegisterMetrics(reg); err != nil {
				return nil, err
			}
		}
		return reg.Gather()
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{g.reg, certMetrics}, promhttp.HandlerOpts{}))
	(&adminAPI{g: g, token: g.adminToken}).routes(mux)
	if g.console != nil {
		mux.Handle("/console", g.console.Handler())
		mux.Handle("/console/", g.console.Handler())
	}
	if g.cur.Load().cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

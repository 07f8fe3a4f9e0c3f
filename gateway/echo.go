package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// echoAddr starts, once, the demo upstream that "builtin:echo" resources
// proxy to, and returns its loopback address. It answers with the identity
// the gateway passed on, so a quickstart user sees what an application
// behind Portcullis receives.
// echoHost is the upstream host of builtin:echo resources; their
// transport dials the demo upstream with dialEcho whatever the host.
const echoHost = "builtin-echo.invalid"

// dialEcho connects to the demo echo upstream, starting it on first use,
// so that building a configuration listens on nothing.
func (g *Gateway) dialEcho(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, g.echoAddr())
}

func (g *Gateway) echoAddr() string {
	g.echoOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			g.log.Error("starting the demo echo upstream", "error", err)
			return
		}
		g.echoLn = ln
		srv := &http.Server{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln) // ends when Run closes echoLn
	})
	if g.echoLn == nil {
		return "127.0.0.1:1" // refused: requests get a 502, not a hang
	}
	return g.echoLn.Addr().String()
}

func echo(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Method   string            `json:"method"`
		Host     string            `json:"host"`
		Path     string            `json:"path"`
		Identity map[string]string `json:"identity"`
		Forward  map[string]string `json:"forwarded"`
	}{r.Method, r.Host, r.URL.Path, map[string]string{}, map[string]string{}}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, hdrPrefix):
			out.Identity[k] = r.Header.Get(k)
		case strings.HasPrefix(k, "X-Forwarded-") || k == "Forwarded":
			out.Forward[k] = r.Header.Get(k)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

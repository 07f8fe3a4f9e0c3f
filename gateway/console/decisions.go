package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"portcullis/gateway/audit"
)

// decisionShown is the most records the decisions page lists.
const decisionShown = 200

// decisionFilter selects decision records by user, device, resource,
// reason and verdict; each set field must be contained in the record's
// (ignoring case), and verdict "allow" or "deny" picks one side.
type decisionFilter struct {
	User, Device, Resource, Reason, Verdict string
}

var filterParams = []string{"user", "device", "resource", "reason", "verdict"}

func parseFilter(v url.Values) (decisionFilter, error) {
	p, err := params(v, filterParams...)
	if err != nil {
		return decisionFilter{}, err
	}
	f := decisionFilter{User: p["user"], Device: p["device"], Resource: p["resource"], Reason: p["reason"], Verdict: p["verdict"]}
	switch f.Verdict {
	case "", "any", "allow", "deny":
	default:
		return decisionFilter{}, &queryError{"verdict", "must be any, allow or deny"}
	}
	return f, nil
}

func (f *decisionFilter) match(r *audit.Record) bool {
	switch f.Verdict {
	case "allow":
		if r.Verdict != "allow" {
			return false
		}
	case "deny":
		if r.Verdict == "allow" {
			return false
		}
	}
	return (f.User == "" || containsFold(r.User, f.User)) &&
		(f.Device == "" || containsFold(r.Device, f.Device)) &&
		(f.Resource == "" || containsFold(r.Resource, f.Resource)) &&
		(f.Reason == "" || containsFold(r.Reason, f.Reason))
}

// decisionRow is a record as the page and the stream show it.
type decisionRow struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Verdict   string    `json:"verdict"`
	Reason    string    `json:"reason"`
	Rule      string    `json:"rule"`
	Resource  string    `json:"resource"`
	User      string    `json:"user"`
	Device    string    `json:"device"`
	DeviceCA  string    `json:"device_ca"`
	Method    string    `json:"method"`
	Host      string    `json:"host"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	Explain   string    `json:"explain,omitempty"` // URL of its explain page
}

func rowOf(r *audit.Record) decisionRow {
	d := decisionRow{Time: r.Time, RequestID: r.RequestID, Verdict: r.Verdict, Reason: r.Reason, Rule: r.Rule,
		Resource: r.Resource, User: r.User, Device: r.Device, DeviceCA: r.DeviceCA, Method: r.Method, Host: r.Host,
		Path: r.Path, Status: r.Status}
	if r.Resource != "" {
		d.Explain = explainURL(Query{Resource: r.Resource, User: r.User, DeviceCA: r.DeviceCA, DeviceID: r.Device,
			Method: r.Method, Host: r.Host, Path: r.Path})
	}
	return d
}

type decisionsData struct {
	Filter    decisionFilter
	Rows      []decisionRow
	StreamURL string
}

func (c *Console) decisionsPage(r *http.Request, s *session) (string, any, error) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		return "", nil, err
	}
	recs := c.hub.recentMatching(f.match, decisionShown)
	d := decisionsData{Filter: f, Rows: make([]decisionRow, len(recs)), StreamURL: "/console/decisions/stream"}
	if r.URL.RawQuery != "" {
		d.StreamURL += "?" + r.URL.RawQuery
	}
	for i := range recs {
		d.Rows[i] = rowOf(&recs[i])
	}
	return "decisions", d, nil
}

// heartbeat is how often an idle event stream sends a comment, so that
// proxies and the browser keep it open.
const heartbeat = 20 * time.Second

// decisionStream sends matching decision records as server-sent events
// ("event: decision", the row as JSON) until the browser leaves.
func (c *Console) decisionStream(w http.ResponseWriter, r *http.Request, s *session) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	rc := http.NewResponseController(w)
	st, stop := c.hub.subscribe()
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("retry: 3000\n\n"))
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		case rec := <-st.ch:
			if dropped := c.hub.droppedFor(st); dropped != reported {
				reported = dropped
				w.Write([]byte("event: lagging\ndata: {}\n\n"))
			}
			if !f.match(&rec) {
				continue
			}
			b, _ := json.Marshal(rowOf(&rec))
			w.Write([]byte("event: decision\ndata: "))
			w.Write(b)
			if _, err := w.Write([]byte("\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

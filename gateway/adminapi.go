package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"portcullis/internal/conf"
	"portcullis/posture"
	"portcullis/posture/feeds"
)

// adminAPI serves /v1/ on the admin listener: the operator's view of
// posture, risk and live requests, and revocation by hand. Every call
// needs `Authorization: Bearer <token>` with the token of admin.token_file;
// without a token file the API is off.
type adminAPI struct {
	g     *Gateway
	token conf.Secret
}

func (a *adminAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/devices/{ca}/{id}", a.auth(a.device))
	mux.HandleFunc("GET /v1/users/{user}", a.auth(a.user))
	mux.HandleFunc("DELETE /v1/users/{user}/risk", a.auth(a.clearRisk))
	mux.HandleFunc("GET /v1/live", a.auth(a.liveList))
	mux.HandleFunc("POST /v1/revoke", a.auth(a.revoke))
	mux.HandleFunc("GET /v1/feeds", a.auth(a.feedList))
	mux.HandleFunc("GET /v1/certificates", a.auth(a.certificates))
}

func (a *adminAPI) certificates(w http.ResponseWriter, r *http.Request) {
	s := a.g.cur.Load()
	out := map[string]any{}
	if s.server != nil {
		out["server"] = s.server.Status()
	}
	if s.devices != nil {
		out["devices"] = s.devices.Status()
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *adminAPI) feedList(w http.ResponseWriter, r *http.Request) {
	var out []map[string]any
	for _, f := range a.g.cur.Load().feeds {
		v := map[string]any{"health": f.Health()}
		if st, ok := f.(interface{ Status() feeds.StreamStatus }); ok {
			v["stream"] = st.Status()
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"feeds": out})
}

func (a *adminAPI) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token.IsZero() {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "the admin API is off: set admin.token_file"})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), a.token.Bytes()) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token"})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type postureView struct {
	Source      string    `json:"source"`
	Managed     bool      `json:"managed"`
	Compliance  string    `json:"compliance"`
	GraceUntil  time.Time `json:"grace_until,omitzero"`
	Threat      string    `json:"threat"`
	ThreatNames []string  `json:"threat_names,omitempty"`
	State       string    `json:"state"`
	Platform    string    `json:"platform,omitempty"`
	OSVersion   string    `json:"os_version,omitempty"`
	User        string    `json:"user,omitempty"`
	ObservedAt  time.Time `json:"observed_at"`
	ReceivedAt  time.Time `json:"received_at"`
	AgeSeconds  float64   `json:"age_seconds"`
}

func (a *adminAPI) device(w http.ResponseWriter, r *http.Request) {
	key := posture.DeviceKey{CA: r.PathValue("ca"), ID: r.PathValue("id")}
	d := a.g.store.Device(key)
	out := map[string]any{"ca": key.CA, "id": key.ID, "known": d != nil}
	if d != nil {
		var recs []postureView
		for _, p := range d.Records {
			recs = append(recs, postureView{Source: p.Source, Managed: p.Managed, Compliance: p.Compliance.String(),
				GraceUntil: p.GraceUntil, Threat: p.Threat.String(), ThreatNames: p.ThreatNames, State: p.State.String(),
				Platform: p.Platform, OSVersion: p.OSVersion, User: p.User, ObservedAt: p.ObservedAt,
				ReceivedAt: p.ReceivedAt, AgeSeconds: time.Since(p.ObservedAt).Seconds()})
		}
		out["records"] = recs
	}
	if rv := a.g.store.DeviceRevocation(key); rv != nil {
		out["revoked_before"] = rv.Before
	}
	out["live_requests"] = a.g.liveMatching(func(e *liveEntry) bool {
		return e.Device != nil && e.Device.CA == key.CA && e.Device.DeviceID == key.ID
	})
	writeJSON(w, http.StatusOK, out)
}

func (a *adminAPI) user(w http.ResponseWriter, r *http.Request) {
	user := strings.ToLower(r.PathValue("user"))
	out := map[string]any{"user": user}
	if rk := a.g.store.Risk(user); rk != nil {
		out["risk"] = map[string]any{"level": rk.Level.String(), "reasons": rk.Reasons, "source": rk.Source,
			"observed_at": rk.ObservedAt, "received_at": rk.ReceivedAt}
	}
	if rv := a.g.store.UserRevocation(user); rv != nil {
		out["revoked_before"] = rv.Before
	}
	out["live_requests"] = a.g.liveMatching(func(e *liveEntry) bool { return e.userID() == user })
	writeJSON(w, http.StatusOK, out)
}

func (a *adminAPI) clearRisk(w http.ResponseWriter, r *http.Request) {
	out, err := a.g.store.ClearRisk(r.Context(), r.PathValue("user"))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": out.String()})
}

func (a *adminAPI) liveList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"live_requests": a.g.liveMatching(func(*liveEntry) bool { return true })})
}

// revokeRequest is the body of POST /v1/revoke. Exactly one of User,
// Device (CA and ID) and Session names what to revoke.
type revokeRequest struct {
	User    string `json:"user"`
	CA      string `json:"ca"`
	Device  string `json:"device"`
	Session string `json:"session"`
	Reason  string `json:"reason"`
}

func (a *adminAPI) revoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body: " + err.Error()})
		return
	}
	rv := posture.Revocation{Source: "admin", Before: time.Now()}
	if req.Reason != "" {
		rv.Reasons = []string{req.Reason}
	}
	n := 0
	if req.User != "" {
		n++
		rv.Kind, rv.User = posture.RevokeUser, strings.ToLower(req.User)
	}
	if req.Device != "" {
		n++
		rv.Kind, rv.Device = posture.RevokeDevice, posture.DeviceKey{CA: req.CA, ID: req.Device}
		if req.CA == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "a device revocation needs ca"})
			return
		}
	}
	if req.Session != "" {
		n++
		rv.Kind, rv.Session = posture.RevokeSession, req.Session
	}
	if n != 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name exactly one of user, device (with ca) or session"})
		return
	}
	out, err := a.g.store.Revoke(r.Context(), rv)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, posture.ErrInvalidEvent) {
			status = http.StatusBadRequest
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	a.g.log.Warn("revoked by hand", "kind", rv.Kind.String(), "user_id", rv.User, "device_id", rv.Device.ID, "reason", req.Reason)
	writeJSON(w, http.StatusOK, map[string]string{"result": out.String(), "kind": rv.Kind.String()})
}

// liveView is one live request as the admin API shows it.
type liveView struct {
	RequestID string    `json:"request_id"`
	Resource  string    `json:"resource"`
	User      string    `json:"user,omitempty"`
	DeviceCA  string    `json:"device_ca,omitempty"`
	DeviceID  string    `json:"device_id,omitempty"`
	Method    string    `json:"method"`
	Host      string    `json:"host"`
	Path      string    `json:"path"`
	Protocol  string    `json:"protocol"`
	Since     time.Time `json:"since"`
}

func (g *Gateway) liveMatching(f func(*liveEntry) bool) []liveView {
	out := []liveView{}
	g.live.rangeEntries(func(e *liveEntry) {
		if !f(e) {
			return
		}
		v := liveView{RequestID: e.requestID, Resource: e.resource, User: e.userID(), Method: e.Request.Method,
			Host: e.Request.Host, Path: e.Request.Path, Protocol: e.Request.Protocol, Since: e.started}
		if e.Device != nil {
			v.DeviceCA, v.DeviceID = e.Device.CA, e.Device.DeviceID
		}
		out = append(out, v)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

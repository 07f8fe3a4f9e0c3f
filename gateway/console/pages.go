package console

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"portcullis/posture"
)

// overviewData is the overview page.
type overviewData struct {
	Now          time.Time
	Live         int
	Devices      int
	NonCompliant int
	Revocations  int
	RiskyUsers   int
	Decisions    uint64
	Requests     chart
	Reasons      chart
	ReasonTable  []reasonTotal
	Feeds        []Feed
	Certificates []certRow
}

type certRow struct {
	Certificate
	Days int
	Warn bool
}

func (c *Console) overview(r *http.Request, s *session) (string, any, error) {
	if _, err := params(r.URL.Query()); err != nil {
		return "", nil, err
	}
	now := c.now()
	d := overviewData{Now: now}
	c.gw.Live(func(*Conn) bool { d.Live++; return true })
	d.Devices, d.NonCompliant = c.deviceCounts(now)
	c.store.RangeRevocations(func(*posture.Revocation) bool { d.Revocations++; return true })
	c.store.RangeRisks(func(rk *posture.UserRisk) bool {
		if rk.Level >= posture.RiskMedium {
			d.RiskyUsers++
		}
		return true
	})
	sr := c.hub.chart(now, chartBuckets)
	d.Decisions = sr.total
	d.Requests, d.Reasons, d.ReasonTable = requestsChart(sr), reasonsChart(sr), sr.reasons
	d.Feeds = c.gw.Feeds()
	for _, ct := range c.gw.Certificates() {
		days := int(ct.NotAfter.Sub(now).Hours() / 24)
		d.Certificates = append(d.Certificates, certRow{Certificate: ct, Days: days, Warn: days < 30})
	}
	slices.SortFunc(d.Certificates, func(a, b certRow) int { return a.NotAfter.Compare(b.NotAfter) })
	return "overview", d, nil
}

// liveData is the live requests page.
type liveData struct {
	Query listQuery
	Conns []Conn
	Pager pager
	Now   time.Time
}

func (c *Console) livePage(r *http.Request, s *session) (string, any, error) {
	lq, err := parseList(r.URL.Query())
	if err != nil {
		return "", nil, err
	}
	all := make([]Conn, 0, 256)
	c.gw.Live(func(cn *Conn) bool {
		if lq.matches(cn.User, cn.DeviceID, cn.Resource, cn.Host, cn.Path, cn.RequestID, cn.RemoteIP, cn.Protocol) {
			all = append(all, *cn)
		}
		return true
	})
	slices.SortFunc(all, func(a, b Conn) int {
		return cmp.Or(a.Started.Compare(b.Started), strings.Compare(a.RequestID, b.RequestID))
	})
	p := paginate(lq, len(all), func(n int) string { return listURL("/console/live", lq, n) })
	i, j := p.bounds()
	return "live", liveData{Query: lq, Conns: all[i:j], Pager: p, Now: c.now()}, nil
}

func (c *Console) closeLive(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PostForm.Get("request_id")
	if id == "" || len(id) > 128 {
		c.fail(w, r, s, http.StatusBadRequest, "Name the request to close.")
		return
	}
	result := "not_found"
	if c.gw.CloseLive(id) {
		result = "closed"
	}
	c.writeAction(r, s, "close_request", id, r.PostForm.Get("reason"), result)
	if result != "closed" {
		c.fail(w, r, s, http.StatusNotFound, "That request is no longer live.")
		return
	}
	http.Redirect(w, r, "/console/live", http.StatusSeeOther)
}

// deviceSummary is one device's posture reduced to one row: the most
// restrictive value any source reports.
type deviceSummary struct {
	Key        posture.DeviceKey
	User       string
	Compliance string
	Threat     string
	State      string
	Newest     time.Time
	Sources    int
	Stale      bool
	Bad        bool // not compliant, not active, a high threat, or stale
	Revoked    bool
}

func summarize(d *posture.Device, maxAge time.Duration, now time.Time) deviceSummary {
	s := deviceSummary{Key: d.Key, Sources: len(d.Records)}
	compliance, threat, state := posture.Compliant, posture.ThreatNone, posture.StateActive
	for i := range d.Records {
		p := &d.Records[i]
		if s.User == "" {
			s.User = p.User
		}
		if p.ObservedAt.After(s.Newest) {
			s.Newest = p.ObservedAt
		}
		if p.Compliance != posture.Compliant {
			if p.Compliance == posture.NotCompliant || compliance == posture.Compliant {
				compliance = p.Compliance
			}
		}
		if p.Threat > threat || p.Threat == posture.ThreatUnknown {
			threat = p.Threat
		}
		if p.State != posture.StateActive && p.State != posture.StateUnreported {
			state = p.State
		}
	}
	s.Compliance, s.Threat, s.State = compliance.String(), threat.String(), state.String()
	s.Stale = maxAge > 0 && now.Sub(s.Newest) > maxAge
	s.Bad = compliance != posture.Compliant || state != posture.StateActive || threat >= posture.ThreatHigh || s.Stale
	return s
}

// devicesData is the devices page.
type devicesData struct {
	Query   listQuery
	Devices []deviceSummary
	Pager   pager
	Now     time.Time
}

var deviceShows = []string{"all", "problems", "revoked"}

func (c *Console) devicesPage(r *http.Request, s *session) (string, any, error) {
	lq, err := parseList(r.URL.Query(), deviceShows...)
	if err != nil {
		return "", nil, err
	}
	now, maxAge := c.now(), c.maxAge
	// Collect keys only, and summarize just the page shown: with a
	// hundred thousand devices, sorting keys is most of the cost.
	var keys []posture.DeviceKey
	if lq.Show == "revoked" {
		c.store.RangeRevocations(func(rv *posture.Revocation) bool {
			if rv.Kind == posture.RevokeDevice && lq.matches(rv.Device.ID, rv.Device.CA, rv.User) {
				keys = append(keys, rv.Device)
			}
			return true
		})
	} else {
		c.store.RangeDevices(func(d *posture.Device) bool {
			if lq.matches(d.Key.ID, d.Key.CA, deviceUser(d)) && (lq.Show != "problems" || summarize(d, maxAge, now).Bad) {
				keys = append(keys, d.Key)
			}
			return true
		})
	}
	slices.SortFunc(keys, func(a, b posture.DeviceKey) int {
		return cmp.Or(strings.Compare(a.CA, b.CA), strings.Compare(a.ID, b.ID))
	})
	p := paginate(lq, len(keys), func(n int) string { return listURL("/console/devices", lq, n) })
	i, j := p.bounds()
	rows := make([]deviceSummary, 0, j-i)
	for _, k := range keys[i:j] {
		ds := deviceSummary{Key: k, Compliance: "unknown", Threat: "unknown", State: "unreported"}
		if d := c.store.Device(k); d != nil {
			ds = summarize(d, maxAge, now)
		}
		ds.Revoked = c.store.DeviceRevocation(k) != nil
		rows = append(rows, ds)
	}
	return "devices", devicesData{Query: lq, Devices: rows, Pager: p, Now: now}, nil
}

func deviceUser(d *posture.Device) string {
	for i := range d.Records {
		if d.Records[i].User != "" {
			return d.Records[i].User
		}
	}
	return ""
}

// deviceData is one device's page.
type deviceData struct {
	Key        posture.DeviceKey
	Known      bool
	Records    []posture.Posture
	Summary    deviceSummary
	Revocation *posture.Revocation
	Live       []Conn
	Now        time.Time
}

func (c *Console) devicePage(r *http.Request, s *session) (string, any, error) {
	p, err := params(r.URL.Query(), "ca", "id")
	if err != nil {
		return "", nil, err
	}
	if p["ca"] == "" || p["id"] == "" {
		return "", nil, &queryError{"id", "name a device with ca and id"}
	}
	key := posture.DeviceKey{CA: p["ca"], ID: p["id"]}
	d := deviceData{Key: key, Now: c.now(), Revocation: c.store.DeviceRevocation(key)}
	if dev := c.store.Device(key); dev != nil {
		d.Known, d.Records, d.Summary = true, dev.Records, summarize(dev, c.maxAge, d.Now)
	}
	c.gw.Live(func(cn *Conn) bool {
		if cn.DeviceCA == key.CA && cn.DeviceID == key.ID {
			d.Live = append(d.Live, *cn)
		}
		return true
	})
	if !d.Known && d.Revocation == nil && len(d.Live) == 0 {
		return "", nil, &notFoundError{"The gateway knows nothing of that device: no posture, no revocation, no live request."}
	}
	return "device", d, nil
}

func (c *Console) revokeDevice(w http.ResponseWriter, r *http.Request, s *session) {
	key := posture.DeviceKey{CA: r.PostForm.Get("ca"), ID: r.PostForm.Get("id")}
	if key.CA == "" || key.ID == "" || len(key.CA)+len(key.ID) > 1024 {
		c.fail(w, r, s, http.StatusBadRequest, "Name the device to revoke with its CA and id.")
		return
	}
	reason := r.PostForm.Get("reason")
	c.revoke(w, r, s, posture.Revocation{Kind: posture.RevokeDevice, Device: key}, "revoke_device", key.String(), reason,
		"/console/device?"+url.Values{"ca": {key.CA}, "id": {key.ID}}.Encode())
}

func (c *Console) revokeUser(w http.ResponseWriter, r *http.Request, s *session) {
	user := strings.ToLower(r.PostForm.Get("user"))
	if user == "" || len(user) > 1024 {
		c.fail(w, r, s, http.StatusBadRequest, "Name the user to revoke.")
		return
	}
	c.revoke(w, r, s, posture.Revocation{Kind: posture.RevokeUser, User: user}, "revoke_user", user, r.PostForm.Get("reason"),
		"/console/user?"+url.Values{"u": {user}}.Encode())
}

func (c *Console) revokeSession(w http.ResponseWriter, r *http.Request, s *session) {
	id, user := r.PostForm.Get("session"), strings.ToLower(r.PostForm.Get("user"))
	if id == "" || len(id) > 1024 || len(user) > 1024 {
		c.fail(w, r, s, http.StatusBadRequest, "Name the session to revoke.")
		return
	}
	back := "/console/users"
	if user != "" {
		back = "/console/user?" + url.Values{"u": {user}}.Encode()
	}
	c.revoke(w, r, s, posture.Revocation{Kind: posture.RevokeSession, Session: id, User: user}, "revoke_session", id,
		r.PostForm.Get("reason"), back)
}

// revoke stores rv as the operator's, records the action, and sends the
// operator back to the page it concerns.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session, rv posture.Revocation, action, target, reason, back string) {
	if len(reason) > 512 {
		c.fail(w, r, s, http.StatusBadRequest, "The reason is too long (at most 512 bytes).")
		return
	}
	now := c.now()
	rv.Source, rv.Before, rv.ObservedAt = "console", now, now
	rv.EventID = "console-" + randomToken()
	if reason != "" {
		rv.Reasons = []string{reason}
	}
	out, err := c.store.Revoke(r.Context(), rv)
	if err != nil {
		c.writeAction(r, s, action, target, reason, "error")
		c.logger.Error("console: revocation failed", "action", action, "error", err)
		c.fail(w, r, s, http.StatusInternalServerError, "The revocation could not be stored; the gateway's log says why.")
		return
	}
	c.writeAction(r, s, action, target, reason, out.String())
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// userRow is one user on the users page.
type userRow struct {
	User    string
	Risk    *posture.UserRisk
	Revoked *posture.Revocation
	Live    int
}

type usersData struct {
	Query listQuery
	Users []userRow
	Pager pager
	Now   time.Time
}

var userShows = []string{"all", "risky", "revoked", "live"}

func (c *Console) usersPage(r *http.Request, s *session) (string, any, error) {
	lq, err := parseList(r.URL.Query(), userShows...)
	if err != nil {
		return "", nil, err
	}
	byUser := map[string]*userRow{}
	row := func(u string) *userRow {
		if r := byUser[u]; r != nil {
			return r
		}
		r := &userRow{User: u}
		byUser[u] = r
		return r
	}
	c.store.RangeRisks(func(rk *posture.UserRisk) bool {
		if lq.matches(rk.User) {
			row(rk.User).Risk = rk
		}
		return true
	})
	c.store.RangeRevocations(func(rv *posture.Revocation) bool {
		if rv.Kind == posture.RevokeUser && lq.matches(rv.User) {
			row(rv.User).Revoked = rv
		}
		return true
	})
	c.gw.Live(func(cn *Conn) bool {
		if cn.User != "" && lq.matches(cn.User) {
			row(cn.User).Live++
		}
		return true
	})
	rows := make([]userRow, 0, len(byUser))
	for _, u := range byUser {
		switch {
		case lq.Show == "risky" && (u.Risk == nil || u.Risk.Level < posture.RiskMedium),
			lq.Show == "revoked" && u.Revoked == nil,
			lq.Show == "live" && u.Live == 0:
			continue
		}
		rows = append(rows, *u)
	}
	slices.SortFunc(rows, func(a, b userRow) int { return strings.Compare(a.User, b.User) })
	p := paginate(lq, len(rows), func(n int) string { return listURL("/console/users", lq, n) })
	i, j := p.bounds()
	return "users", usersData{Query: lq, Users: rows[i:j], Pager: p, Now: c.now()}, nil
}

// userData is one user's page.
type userData struct {
	User       string
	Risk       *posture.UserRisk
	Revocation *posture.Revocation
	Sessions   []sessionRow
	Live       []Conn
	Now        time.Time
}

// sessionRow is one login session with live requests.
type sessionRow struct {
	ID      string
	Live    int
	Revoked bool
}

func (c *Console) userPage(r *http.Request, s *session) (string, any, error) {
	p, err := params(r.URL.Query(), "u")
	if err != nil {
		return "", nil, err
	}
	user := strings.ToLower(p["u"])
	if user == "" {
		return "", nil, &queryError{"u", "name a user"}
	}
	d := userData{User: user, Risk: c.store.Risk(user), Revocation: c.store.UserRevocation(user), Now: c.now()}
	sessions := map[string]int{}
	c.gw.Live(func(cn *Conn) bool {
		if cn.User == user {
			d.Live = append(d.Live, *cn)
			if cn.SessionID != "" {
				sessions[cn.SessionID]++
			}
		}
		return true
	})
	revoked := map[string]bool{}
	c.store.RangeRevocations(func(rv *posture.Revocation) bool {
		if rv.Kind == posture.RevokeSession && rv.User == user {
			revoked[rv.Session] = true
			if _, ok := sessions[rv.Session]; !ok {
				sessions[rv.Session] = 0
			}
		}
		return true
	})
	for id, n := range sessions {
		d.Sessions = append(d.Sessions, sessionRow{ID: id, Live: n, Revoked: revoked[id]})
	}
	slices.SortFunc(d.Sessions, func(a, b sessionRow) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Live, func(a, b Conn) int { return a.Started.Compare(b.Started) })
	return "user", d, nil
}

// feedsData is the feeds page.
type feedsData struct {
	Feeds []Feed
	Now   time.Time
}

func (c *Console) feedsPage(r *http.Request, s *session) (string, any, error) {
	if _, err := params(r.URL.Query()); err != nil {
		return "", nil, err
	}
	return "feeds", feedsData{Feeds: c.gw.Feeds(), Now: c.now()}, nil
}

// explainData is the explain page.
type explainData struct {
	Query       Query
	Explanation Explanation
	Err         string
}

func (c *Console) explainPage(r *http.Request, s *session) (string, any, error) {
	p, err := params(r.URL.Query(), "resource", "user", "ca", "device", "method", "host", "path")
	if err != nil {
		return "", nil, err
	}
	q := Query{Resource: p["resource"], User: strings.ToLower(p["user"]), DeviceCA: p["ca"], DeviceID: p["device"],
		Method: cmp.Or(p["method"], http.MethodGet), Host: p["host"], Path: cmp.Or(p["path"], "/")}
	if q.Resource == "" {
		return "", nil, &queryError{"resource", "name the resource to decide for"}
	}
	if (q.DeviceID == "") != (q.DeviceCA == "") {
		return "", nil, &queryError{"device", "a device needs both ca and device"}
	}
	d := explainData{Query: q}
	if d.Explanation, err = c.gw.Explain(q); err != nil {
		d.Err = err.Error()
	}
	return "explain", d, nil
}

// explainURL links a decision record to the explain page.
func explainURL(q Query) string {
	v := url.Values{"resource": {q.Resource}}
	for k, s := range map[string]string{"user": q.User, "ca": q.DeviceCA, "device": q.DeviceID, "method": q.Method,
		"host": q.Host, "path": q.Path} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return "/console/explain?" + v.Encode()
}

// age writes how long ago t was, briefly.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// deviceCountsTTL is how long the overview's device counts are reused:
// counting a hundred thousand devices on every refresh of every open
// overview would cost more than the numbers are worth.
const deviceCountsTTL = 5 * time.Second

// deviceCounts returns how many devices there are and how many have a
// problem, counted at most once per deviceCountsTTL.
func (c *Console) deviceCounts(now time.Time) (all, bad int) {
	c.countsMu.Lock()
	defer c.countsMu.Unlock()
	if d := now.Sub(c.countsAt); !c.countsAt.IsZero() && d >= 0 && d < deviceCountsTTL {
		return c.counts[0], c.counts[1]
	}
	c.store.RangeDevices(func(dev *posture.Device) bool {
		all++
		if summarize(dev, c.maxAge, now).Bad {
			bad++
		}
		return true
	})
	c.countsAt, c.counts = now, [2]int{all, bad}
	return all, bad
}

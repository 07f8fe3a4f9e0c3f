package feeds

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
	"portcullis/posture"
)

var t0 = time.Date(2026, 9, 14, 8, 20, 0, 0, time.UTC)

type harness struct {
	t      testing.TB
	dir    string
	keys   [][]byte
	cfg    posture.FeedConfig
	db     *posture.DB
	reg    *prometheus.Registry
	srv    *httptest.Server
	url    string
	now    time.Time
	logBuf *bytes.Buffer
}

func newKey(t testing.TB) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func writeSecret(t testing.TB, dir, name string, key []byte) conf.Path {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("whsec_"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf.Path(p)
}

// newHarness serves a webhook feed named "zimperium" with two active keys
// over real HTTP into a real store in a temporary directory.
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), now: t0, reg: prometheus.NewRegistry(), logBuf: &bytes.Buffer{}}
	h.keys = [][]byte{newKey(t), newKey(t)}
	h.cfg = posture.FeedConfig{FeedBase: posture.FeedBase{Name: "zimperium", Type: "webhook", MaxBody: 4096}, DeviceKeys: posture.DeviceKeys{DeviceCA: "ivanti"}, WebhookKeys: posture.WebhookKeys{SecretFile: writeSecret(t, h.dir, "a.secret", h.keys[0]), SecretFiles: []conf.Path{writeSecret(t, h.dir, "b.secret", h.keys[1])}}}
	h.open()
	return h
}

func (h *harness) open() {
	t := h.t
	db, err := posture.Open(filepath.Join(h.dir, "state"), posture.Options{Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	var logMu sync.Mutex
	logger := slogTo(h.logBuf, &logMu)
	wh, err := NewWebhook(h.cfg, db, Options{Logger: logger, Registry: h.reg, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(wh.Path(), wh)
	h.srv = httptest.NewServer(mux)
	h.url = h.srv.URL + wh.Path()
	t.Cleanup(h.close)
}

func (h *harness) close() {
	if h.srv != nil {
		h.srv.Close()
		h.db.Close()
		h.srv = nil
	}
}

type delivery struct {
	method, contentType string
	id                  string
	ts                  time.Time
	key                 []byte
	sig                 string // overrides the computed signature
	omit                string // header to leave out
	body                []byte
}

func (h *harness) post(d delivery) (int, map[string]any) {
	h.t.Helper()
	if d.method == "" {
		d.method = http.MethodPost
	}
	if d.contentType == "" {
		d.contentType = "application/json"
	}
	if d.ts.IsZero() {
		d.ts = h.now
	}
	if d.key == nil {
		d.key = h.keys[0]
	}
	if d.sig == "" {
		d.sig = SignWebhook(d.key, d.id, d.ts, d.body)
	}
	req, err := http.NewRequest(d.method, h.url, bytes.NewReader(d.body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", d.contentType)
	for k, v := range map[string]string{HeaderID: d.id, HeaderTimestamp: fmt.Sprint(d.ts.Unix()), HeaderSignature: d.sig} {
		if k != d.omit {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		h.t.Fatalf("reply %d is not JSON: %q", resp.StatusCode, b)
	}
	if resp.StatusCode != 200 && resp.Header.Get("Content-Type") != "application/problem+json" {
		h.t.Errorf("error reply Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, m
}

// event returns a valid single-event body; edit changes its fields.
func event(id string, observed time.Time, edit func(m map[string]any)) []byte {
	m := map[string]any{
		"spec": Spec, "event_id": id, "source": "zimperium",
		"observed_at": observed.Format(time.RFC3339Nano),
		"device":      map[string]any{"id": "dev-1", "aliases": []any{map[string]any{"kind": "serial", "value": "F2LX"}}},
		"user":        "J.Doe@Acme.Example", "managed": true, "compliant": false,
		"threat": map[string]any{"level": "critical", "names": []string{"MITM - SSL Strip"}},
		"os":     map[string]any{"platform": "ios", "version": "17.6.1"},
		"state":  "active", "reasons": []string{"mtd_threat"},
		"ignored": map[string]any{"future": "field"},
	}
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return b
}

var devKey = posture.DeviceKey{CA: "ivanti", ID: "dev-1"}

func (h *harness) record() *posture.Posture {
	d := h.db.Device(devKey)
	if d == nil {
		return nil
	}
	return &d.Records[0]
}

func TestWebhookAppliesAndPersists(t *testing.T) {
	h := newHarness(t)
	code, rep := h.post(delivery{id: "e1", body: event("e1", t0.Add(-time.Minute), nil)})
	if code != 200 || rep["applied"] != 1.0 || rep["duplicate"] != 0.0 || rep["out_of_order"] != 0.0 {
		t.Fatalf("reply = %d %v", code, rep)
	}
	want := posture.Posture{
		Source: "zimperium", EventID: "e1", Managed: true, Compliance: posture.NotCompliant,
		Threat: posture.ThreatCritical, ThreatNames: []string{"MITM - SSL Strip"}, State: posture.StateActive,
		Platform: "ios", OSVersion: "17.6.1", User: "j.doe@acme.example", Reasons: []string{"mtd_threat"},
		ObservedAt: t0.Add(-time.Minute), ReceivedAt: t0,
	}
	check := func() {
		t.Helper()
		got := h.record()
		if got == nil {
			t.Fatal("no record stored")
		}
		if fmt.Sprint(*got) != fmt.Sprint(want) {
			t.Errorf("record = %+v\nwant %+v", *got, want)
		}
	}
	check()
	h.close()
	h.open()
	check()
	if got := counterValue(t, h.reg, "portcullis_feed_requests_total", "200", "zimperium"); got != 1 {
		t.Errorf("requests{200} = %v, want 1", got)
	}
}

// counterValue finds a counter in the registry's output by its label
// values, in the order of the label names (sorted).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i, lp := range m.GetLabel() {
				if i >= len(labels) || lp.GetValue() != labels[i] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestWebhookRejections(t *testing.T) {
	h := newHarness(t)
	body := event("e1", t0, nil)
	tests := []struct {
		name   string
		d      delivery
		code   int
		reason string
	}{
		{"GET", delivery{method: http.MethodGet, id: "e1", body: nil}, 405, ReasonMethodNotAllowed},
		{"wrong content type", delivery{contentType: "text/plain", id: "e1", body: body}, 415, ReasonUnsupportedMedia},
		{"oversized", delivery{id: "e1", body: bytes.Repeat([]byte(" "), 5000)}, 413, ReasonTooLarge},
		{"missing id", delivery{id: "e1", body: body, omit: HeaderID}, 401, ReasonMissingHeaders},
		{"missing timestamp", delivery{id: "e1", body: body, omit: HeaderTimestamp}, 401, ReasonMissingHeaders},
		{"missing signature", delivery{id: "e1", body: body, omit: HeaderSignature}, 401, ReasonMissingHeaders},
		{"stale timestamp", delivery{id: "e1", body: body, ts: t0.Add(-301 * time.Second)}, 401, ReasonStaleTimestamp},
		{"future timestamp", delivery{id: "e1", body: body, ts: t0.Add(301 * time.Second)}, 401, ReasonStaleTimestamp},
		{"bad signature", delivery{id: "e1", body: body, key: newKey(t)}, 401, ReasonBadSignature},
		{"signature of another body", delivery{id: "e1", body: body, sig: SignWebhook(newKey(t), "e1", t0, []byte("{}"))}, 401, ReasonBadSignature},
		{"v2 only", delivery{id: "e1", body: body, sig: "v2," + strings.TrimPrefix(SignWebhook(newKey(t), "e1", t0, body), "v1,")}, 401, ReasonBadSignature},
		{"not json", delivery{id: "e1", body: []byte("{")}, 400, ReasonInvalidPayload},
		{"unknown spec", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { m["spec"] = "portcullis.posture.v2" })}, 400, ReasonInvalidPayload},
		{"missing managed", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { delete(m, "managed") })}, 400, ReasonInvalidPayload},
		{"missing compliant", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { delete(m, "compliant") })}, 400, ReasonInvalidPayload},
		{"bad threat level", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { m["threat"] = map[string]any{"level": "elevated"} })}, 400, ReasonInvalidPayload},
		{"wrong type", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { m["managed"] = "yes" })}, 400, ReasonInvalidPayload},
		{"id mismatch", delivery{id: "other", body: body}, 400, ReasonIDMismatch},
		{"source mismatch", delivery{id: "e1", body: event("e1", t0, func(m map[string]any) { m["source"] = "intune" })}, 400, ReasonSourceMismatch},
		{"future observed_at", delivery{id: "e1", body: event("e1", t0.Add(6*time.Minute), nil)}, 400, ReasonFutureObserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, p := h.post(tt.d)
			if code != tt.code || p["reason"] != tt.reason {
				t.Errorf("reply = %d %v, want %d %s", code, p["reason"], tt.code, tt.reason)
			}
			if p["status"] != float64(code) || p["type"] != problemTypePrefix+tt.reason || p["title"] == "" || p["detail"] == "" {
				t.Errorf("problem document = %v", p)
			}
		})
	}
	if h.record() != nil {
		t.Error("a rejected delivery was stored")
	}
	// Refusals are logged at most warnBurst a minute; the next line after
	// the minute says how many were left out. The metric counts them all.
	logs := h.logBuf.String()
	if n := strings.Count(logs, "feed request refused"); n != warnBurst {
		t.Errorf("logged %d of %d refusals in one minute, want %d", n, len(tests), warnBurst)
	}
	h.now = h.now.Add(warnInterval)
	if code, _ := h.post(delivery{id: "e1", body: body, key: newKey(t)}); code != 401 {
		t.Fatalf("bad signature after a minute = %d", code)
	}
	logs = h.logBuf.String()
	if n := strings.Count(logs, "feed request refused"); n != warnBurst+1 {
		t.Errorf("logged %d refusals, want %d", n, warnBurst+1)
	}
	if want := fmt.Sprintf("msg=\"feed log lines suppressed\" feed=zimperium suppressed=%d", len(tests)-warnBurst); !strings.Contains(logs, want) {
		t.Errorf("no summary line %q in:\n%s", want, logs)
	}
	if got := counterValue(t, h.reg, "portcullis_feed_rejections_total", "zimperium", ReasonBadSignature); got != 4 {
		t.Errorf("rejections{bad_signature} = %v, want 4 (every refusal counted)", got)
	}
	for _, secret := range h.keys {
		if strings.Contains(logs, base64.StdEncoding.EncodeToString(secret)) {
			t.Error("a secret was logged")
		}
	}
	if strings.Contains(logs, "MITM") {
		t.Error("a body was logged")
	}
}

func TestWebhookSignatures(t *testing.T) {
	h := newHarness(t)
	other := newKey(t)
	tests := []struct {
		name string
		sig  func(id string, body []byte) string
		ts   time.Duration // timestamp offset from now
		code int
	}{
		{"first key", func(id string, b []byte) string { return SignWebhook(h.keys[0], id, t0, b) }, 0, 200},
		{"second (rotated) key", func(id string, b []byte) string { return SignWebhook(h.keys[1], id, t0, b) }, 0, 200},
		{"several entries, one good", func(id string, b []byte) string {
			return "v1,AAAA v1a,xyz " + SignWebhook(other, id, t0, b) + " v1," + " " + SignWebhook(h.keys[1], id, t0, b)
		}, 0, 200},
		{"only unknown versions", func(id string, b []byte) string {
			return "v2," + strings.TrimPrefix(SignWebhook(h.keys[0], id, t0, b), "v1,")
		}, 0, 401},
		{"at the edge of the window", func(id string, b []byte) string {
			return SignWebhook(h.keys[0], id, t0.Add(-300*time.Second), b)
		}, -300 * time.Second, 200},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprint("e", i)
			body := event(id, t0.Add(time.Duration(i)*time.Second), nil)
			code, rep := h.post(delivery{id: id, body: body, ts: t0.Add(tt.ts), sig: tt.sig(id, body)})
			if code != tt.code {
				t.Errorf("reply = %d %v, want %d", code, rep, tt.code)
			}
		})
	}
}

func TestWebhookReplayAndOrdering(t *testing.T) {
	h := newHarness(t)
	compliant := func(c any) func(map[string]any) { return func(m map[string]any) { m["compliant"] = c } }
	steps := []struct {
		name  string
		id    string
		at    time.Time
		edit  func(map[string]any)
		reply [3]float64 // applied, duplicate, out_of_order
		want  posture.Compliance
	}{
		{"first", "e1", t0.Add(-time.Minute), compliant(true), [3]float64{1, 0, 0}, posture.Compliant},
		{"replayed", "e1", t0.Add(-time.Minute), compliant(true), [3]float64{0, 1, 0}, posture.Compliant},
		{"replayed with other content", "e1", t0, compliant(false), [3]float64{0, 1, 0}, posture.Compliant},
		{"older", "e2", t0.Add(-2 * time.Minute), compliant(false), [3]float64{0, 0, 1}, posture.Compliant},
		{"equal, more restrictive", "e3", t0.Add(-time.Minute), compliant(false), [3]float64{1, 0, 0}, posture.NotCompliant},
		{"equal, less restrictive", "e4", t0.Add(-time.Minute), compliant(true), [3]float64{0, 0, 1}, posture.NotCompliant},
		{"newer, unknown", "e5", t0, compliant(nil), [3]float64{1, 0, 0}, posture.ComplianceUnknown},
		// A sender with fractions, then one with whole seconds: the two
		// reports of one second tie, and the more restrictive wins.
		{"fractional second, compliant", "e6", t0.Add(time.Second + 600*time.Millisecond), compliant(true), [3]float64{1, 0, 0}, posture.Compliant},
		{"same whole second, not compliant", "e7", t0.Add(time.Second), compliant(false), [3]float64{1, 0, 0}, posture.NotCompliant},
		{"same second, compliant again", "e8", t0.Add(time.Second + 900*time.Millisecond), compliant(true), [3]float64{0, 0, 1}, posture.NotCompliant},
		{"next second, compliant", "e9", t0.Add(2 * time.Second), compliant(true), [3]float64{1, 0, 0}, posture.Compliant},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, rep := h.post(delivery{id: s.id, body: event(s.id, s.at, s.edit)})
			got := [3]float64{}
			got[0], _ = rep["applied"].(float64)
			got[1], _ = rep["duplicate"].(float64)
			got[2], _ = rep["out_of_order"].(float64)
			if code != 200 || got != s.reply {
				t.Errorf("reply = %d %v, want 200 %v", code, rep, s.reply)
			}
			if r := h.record(); r == nil || r.Compliance != s.want {
				t.Errorf("stored compliance = %v, want %v", r, s.want)
			}
		})
	}
}

func batchBody(events ...[]byte) []byte {
	return []byte("[" + string(bytes.Join(events, []byte(","))) + "]")
}

func TestWebhookBatch(t *testing.T) {
	h := newHarness(t)
	other := func(id string) func(map[string]any) {
		return func(m map[string]any) { m["device"] = map[string]any{"id": id} }
	}
	bad := batchBody(event("b1", t0, nil), event("b2", t0, other("dev-2")), event("b3", t0, func(m map[string]any) { m["state"] = "stolen" }))
	code, p := h.post(delivery{id: "batch-1", body: bad})
	if code != 400 || p["reason"] != ReasonInvalidPayload || !strings.HasPrefix(p["detail"].(string), "event 2: state") {
		t.Errorf("bad batch = %d %v", code, p)
	}
	if h.db.Stats().DeviceRecords != 0 {
		t.Fatal("part of a rejected batch was stored")
	}
	mismatch := batchBody(event("b1", t0, nil), event("b2", t0, func(m map[string]any) { m["source"] = "intune" }))
	if code, p := h.post(delivery{id: "batch-2", body: mismatch}); code != 400 || p["reason"] != ReasonSourceMismatch {
		t.Errorf("batch with a foreign source = %d %v", code, p)
	}
	good := batchBody(event("b1", t0, nil), event("b2", t0, other("dev-2")), event("b1", t0, nil))
	code, rep := h.post(delivery{id: "batch-3", body: good})
	if code != 200 || rep["applied"] != 2.0 || rep["duplicate"] != 1.0 {
		t.Errorf("good batch = %d %v", code, rep)
	}
	if s := h.db.Stats(); s.Devices != 2 {
		t.Errorf("devices stored = %d, want 2", s.Devices)
	}
}

func TestWebhookStoreClosed(t *testing.T) {
	h := newHarness(t)
	h.db.Close()
	code, p := h.post(delivery{id: "e1", body: event("e1", t0, nil)})
	if code != 503 || p["reason"] != ReasonStoreUnavailable {
		t.Errorf("reply = %d %v, want 503", code, p)
	}
}

func TestWebhookConcurrent(t *testing.T) {
	h := newHarness(t)
	const posters, each = 8, 10
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("p%d-%d", p, i)
				body := event(id, t0.Add(time.Duration(i)*time.Second), func(m map[string]any) {
					m["device"] = map[string]any{"id": fmt.Sprint("dev-", p)}
				})
				req, _ := http.NewRequest("POST", h.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(HeaderID, id)
				req.Header.Set(HeaderTimestamp, fmt.Sprint(t0.Unix()))
				req.Header.Set(HeaderSignature, SignWebhook(h.keys[p%2], id, t0, body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s: status %d", id, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if s := h.db.Stats(); s.Devices != posters {
		t.Errorf("devices = %d, want %d", s.Devices, posters)
	}
	for p := range posters {
		d := h.db.Device(posture.DeviceKey{CA: "ivanti", ID: fmt.Sprint("dev-", p)})
		if d == nil || !d.Records[0].ObservedAt.Equal(t0.Add((each-1)*time.Second)) {
			t.Errorf("device %d: %+v", p, d)
		}
	}
}

func TestNewWebhookErrors(t *testing.T) {
	dir := t.TempDir()
	db, err := posture.Open(dir, posture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	short := conf.Path(filepath.Join(dir, "short"))
	os.WriteFile(short.String(), []byte("whsec_"+base64.StdEncoding.EncodeToString([]byte("too short"))), 0o600)
	good := writeSecret(t, dir, "good", newKey(t))
	tests := []struct {
		name string
		cfg  posture.FeedConfig
		want string
	}{
		{"missing file", posture.FeedConfig{FeedBase: posture.FeedBase{Name: "a", Type: "webhook"}, DeviceKeys: posture.DeviceKeys{DeviceCA: "x"}, WebhookKeys: posture.WebhookKeys{SecretFile: conf.Path(filepath.Join(dir, "nope"))}}, "reading secret"},
		{"short secret", posture.FeedConfig{FeedBase: posture.FeedBase{Name: "a", Type: "webhook"}, DeviceKeys: posture.DeviceKeys{DeviceCA: "x"}, WebhookKeys: posture.WebhookKeys{SecretFile: short}}, "24..64 bytes"},
		{"no device CA", posture.FeedConfig{FeedBase: posture.FeedBase{Name: "a", Type: "webhook"}, WebhookKeys: posture.WebhookKeys{SecretFile: good}}, "device_ca is required"},
		{"other type", posture.FeedConfig{FeedBase: posture.FeedBase{Name: "a", Type: "ssf"}, DeviceKeys: posture.DeviceKeys{DeviceCA: "x"}, WebhookKeys: posture.WebhookKeys{SecretFile: good}}, "secret_file: not a key of a ssf feed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewWebhook(tt.cfg, db, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewWebhook = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// Two feeds on one registry share the metrics.
	reg := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		if _, err := NewWebhook(posture.FeedConfig{FeedBase: posture.FeedBase{Name: name, Type: "webhook"}, DeviceKeys: posture.DeviceKeys{DeviceCA: "x"}, WebhookKeys: posture.WebhookKeys{SecretFile: good}}, db, Options{Registry: reg}); err != nil {
			t.Fatalf("feed %s: %v", name, err)
		}
	}
}

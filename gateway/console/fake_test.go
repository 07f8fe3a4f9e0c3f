package console

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"portcullis/gateway/audit"
	"portcullis/posture"
	"portcullis/posture/feeds"
)

// fakeStore is an in-memory [Store].
type fakeStore struct {
	mu      sync.Mutex
	devices map[posture.DeviceKey]*posture.Device
	risks   map[string]*posture.UserRisk
	revs    []*posture.Revocation
	revoked []posture.Revocation // what Revoke was asked
}

func newFakeStore() *fakeStore {
	return &fakeStore{devices: map[posture.DeviceKey]*posture.Device{}, risks: map[string]*posture.UserRisk{}}
}

func (s *fakeStore) Device(k posture.DeviceKey) *posture.Device { return s.devices[k] }
func (s *fakeStore) RangeDevices(f func(*posture.Device) bool) {
	for _, d := range s.devices {
		if !f(d) {
			return
		}
	}
}
func (s *fakeStore) Risk(u string) *posture.UserRisk { return s.risks[u] }
func (s *fakeStore) RangeRisks(f func(*posture.UserRisk) bool) {
	for _, r := range s.risks {
		if !f(r) {
			return
		}
	}
}
func (s *fakeStore) UserRevocation(u string) *posture.Revocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.revs {
		if r.Kind == posture.RevokeUser && r.User == u {
			return r
		}
	}
	return nil
}
func (s *fakeStore) DeviceRevocation(k posture.DeviceKey) *posture.Revocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.revs {
		if r.Kind == posture.RevokeDevice && r.Device == k {
			return r
		}
	}
	return nil
}
func (s *fakeStore) RangeRevocations(f func(*posture.Revocation) bool) {
	s.mu.Lock()
	revs := append([]*posture.Revocation(nil), s.revs...)
	s.mu.Unlock()
	for _, r := range revs {
		if !f(r) {
			return
		}
	}
}
func (s *fakeStore) SessionRevoked(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.revs {
		if r.Kind == posture.RevokeSession && r.Session == id {
			return true
		}
	}
	return false
}
func (s *fakeStore) Revoke(_ context.Context, r posture.Revocation) (posture.Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = append(s.revoked, r)
	s.revs = append(s.revs, &r)
	return posture.Applied, nil
}

// fakeGateway is a [Gateway] over fixed data.
type fakeGateway struct {
	mu       sync.Mutex
	conns    []Conn
	closed   []string
	feeds    []Feed
	certs    []Certificate
	explains []Query
}

func (g *fakeGateway) Live(f func(*Conn) bool) {
	g.mu.Lock()
	conns := g.conns
	g.mu.Unlock()
	var c Conn // one copy, reused, as the gateway's Live does
	for i := range conns {
		c = conns[i]
		if !f(&c) {
			return
		}
	}
}

func (g *fakeGateway) CloseLive(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range g.conns {
		if c.RequestID == id {
			g.closed = append(g.closed, id)
			g.conns = append(g.conns[:i:i], g.conns[i+1:]...)
			return true
		}
	}
	return false
}

func (g *fakeGateway) Feeds() []Feed               { return g.feeds }
func (g *fakeGateway) Certificates() []Certificate { return g.certs }
func (g *fakeGateway) Explain(q Query) (Explanation, error) {
	g.mu.Lock()
	g.explains = append(g.explains, q)
	g.mu.Unlock()
	if q.Resource == "missing" {
		return Explanation{}, fmt.Errorf("no resource named %q", q.Resource)
	}
	return Explanation{Verdict: "deny", Reason: "device.not_compliant", Rule: "policy.device.compliant",
		Message: "The device is not compliant.", Inputs: []string{"posture from " + q.User}}, nil
}

// fakeLog is a [Log] the test feeds by hand.
type fakeLog struct {
	ch      chan audit.Record
	mu      sync.Mutex
	actions []audit.Action
}

func newFakeLog() *fakeLog { return &fakeLog{ch: make(chan audit.Record, 16)} }

func (l *fakeLog) Subscribe(int) (<-chan audit.Record, func()) { return l.ch, func() {} }
func (l *fakeLog) WriteAction(a *audit.Action) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.actions = append(l.actions, *a)
}
func (l *fakeLog) Actions() []audit.Action {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Action(nil), l.actions...)
}

// hostile is a string that is markup if a page fails to escape it.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

var fakeNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fixture fills a store and gateway with a little of everything, with
// hostile strings wherever a feed, a certificate or a client chooses the
// text.
func fixture() (*fakeStore, *fakeGateway) {
	st := newFakeStore()
	good := posture.DeviceKey{CA: "corp", ID: "dev-good"}
	bad := posture.DeviceKey{CA: "corp", ID: "dev-" + hostile}
	st.devices[good] = &posture.Device{Key: good, Records: []posture.Posture{{Source: "uem", Managed: true,
		Compliance: posture.Compliant, Threat: posture.ThreatNone, State: posture.StateActive, User: "alice@example.test",
		ObservedAt: fakeNow.Add(-time.Minute), ReceivedAt: fakeNow.Add(-time.Minute)}}}
	st.devices[bad] = &posture.Device{Key: bad, Records: []posture.Posture{{Source: "mtd" + hostile, Managed: true,
		Compliance: posture.NotCompliant, Threat: posture.ThreatHigh, ThreatNames: []string{hostile}, State: posture.StateActive,
		Platform: hostile, User: hostile, ObservedAt: fakeNow.Add(-time.Hour), ReceivedAt: fakeNow.Add(-time.Hour)}}}
	st.risks["mallory"+hostile] = &posture.UserRisk{User: "mallory" + hostile, Level: posture.RiskHigh, Reasons: []string{hostile},
		Source: "okta" + hostile, ObservedAt: fakeNow.Add(-2 * time.Minute)}
	st.revs = append(st.revs, &posture.Revocation{Kind: posture.RevokeUser, User: "eve" + hostile, Before: fakeNow.Add(-time.Hour),
		Source: "admin", Reasons: []string{hostile}})
	gw := &fakeGateway{
		conns: []Conn{
			{RequestID: "req-1", Resource: "app", User: "alice@example.test", SessionID: "sess-1", DeviceCA: "corp", DeviceID: "dev-good",
				Method: "GET", Host: "app.example.test", Path: "/ws", Protocol: "HTTP/1.1", Started: fakeNow.Add(-30 * time.Second), BytesOut: 2048, BytesIn: 512},
			{RequestID: "req-" + hostile, Resource: "app" + hostile, User: "mallory" + hostile, SessionID: "sess-" + hostile,
				DeviceCA: "corp", DeviceID: "dev-" + hostile, Method: "GET", Host: "h" + hostile, Path: "/" + hostile,
				Protocol: "HTTP/2.0", Started: fakeNow.Add(-time.Minute)},
		},
		feeds: []Feed{
			{FeedHealth: feeds.FeedHealth{Name: "uem", Type: "webhook", LastEvent: fakeNow.Add(-time.Minute), Accepted: 10}},
			{FeedHealth: feeds.FeedHealth{Name: "ssf", Type: "ssf", Rejected: 2, LastError: hostile, LastErrorAt: fakeNow.Add(-time.Minute)},
				Silent: true, Stream: &feeds.StreamStatus{StreamID: "stream-" + hostile, Status: hostile, Verified: true}},
		},
		certs: []Certificate{
			{Kind: "server", Name: "app.example.test", NotAfter: fakeNow.Add(10 * 24 * time.Hour), Detail: hostile},
			{Kind: "device CA", Name: "corp", NotAfter: fakeNow.Add(400 * 24 * time.Hour)},
		},
	}
	return st, gw
}

// hostileRecord is a decision record full of markup.
func hostileRecord(id string) audit.Record {
	return audit.Record{Time: fakeNow, RequestID: id, Resource: "app" + hostile, User: "mallory" + hostile,
		Device: "dev-" + hostile, DeviceCA: "corp", Verdict: "deny", Reason: "device.not_compliant" + hostile,
		Rule: hostile, Method: "GET", Host: "h" + hostile, Path: "/" + hostile, Status: 403}
}

func containsAny(s string, subs ...string) string {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return sub
		}
	}
	return ""
}

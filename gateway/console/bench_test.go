package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"portcullis/gateway/audit"
	"portcullis/posture"
)

// bigConsole is a console over 10,000 live requests, 100,000 devices,
// 20,000 users at risk, a full decision ring and an hour of counters: the
// scale the console's pages must answer at in well under 200 ms.
func bigConsole(b *testing.B) (*testConsole, *http.Cookie) {
	tc := newTestConsole(b)
	st, gw := tc.store, tc.gw
	for i := range 100_000 {
		k := posture.DeviceKey{CA: "corp", ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)}
		c := posture.Compliant
		if i%50 == 0 {
			c = posture.NotCompliant
		}
		st.devices[k] = &posture.Device{Key: k, Records: []posture.Posture{
			{Source: "uem", Managed: true, Compliance: c, Threat: posture.ThreatNone, State: posture.StateActive,
				User: fmt.Sprintf("user%d@example.test", i%20_000), ObservedAt: fakeNow.Add(-time.Duration(i) * time.Second)},
			{Source: "mtd", Managed: true, Compliance: posture.Compliant, Threat: posture.ThreatLow, State: posture.StateActive,
				ObservedAt: fakeNow.Add(-time.Minute)},
		}}
	}
	for i := range 20_000 {
		u := fmt.Sprintf("user%d@example.test", i)
		st.risks[u] = &posture.UserRisk{User: u, Level: posture.RiskLevel(1 + i%3), Source: "okta", ObservedAt: fakeNow}
	}
	gw.conns = gw.conns[:0]
	for i := range 10_000 {
		gw.conns = append(gw.conns, Conn{RequestID: fmt.Sprintf("req-%d", i), Resource: "app", User: fmt.Sprintf("user%d@example.test", i%20_000),
			SessionID: fmt.Sprintf("s%d", i), DeviceCA: "corp", DeviceID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Method: "GET",
			Host: "app.example.test", Path: "/ws", Protocol: "HTTP/1.1", Started: fakeNow.Add(-time.Duration(i) * time.Second)})
	}
	for s := range chartSeconds {
		at := fakeNow.Add(-time.Duration(s) * time.Second)
		for i := range 5 {
			rec := audit.Record{RequestID: fmt.Sprint(s, i), Resource: "app", User: "user1@example.test", Verdict: "allow", Reason: "allowed"}
			if i == 0 {
				rec.Verdict, rec.Reason = "deny", []string{"device.not_compliant", "user.risk_too_high", "device.posture_stale"}[s%3]
			}
			tc.hub.add(rec, at)
		}
	}
	ck, _ := tc.signIn(b)
	return tc, ck
}

// BenchmarkPages reports each page's server time at scale.
func BenchmarkPages(b *testing.B) {
	tc, ck := bigConsole(b)
	for _, p := range []string{
		"/console/", "/console/live", "/console/live?q=user1@", "/console/devices", "/console/devices?show=problems",
		"/console/devices?q=0000ff", "/console/device?ca=corp&id=00000001-0000-4000-8000-000000000001",
		"/console/users", "/console/users?show=risky", "/console/user?u=user1@example.test",
		"/console/decisions", "/console/decisions?reason=stale", "/console/feeds",
		"/console/explain?resource=app&user=user1@example.test",
	} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("GET", p, nil)
				r.AddCookie(ck)
				tc.Handler().ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("GET %s = %d", p, w.Code)
				}
			}
			// Wall time on a shared machine waits for CPU; the
			// process's CPU time per page says what the page costs.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkHubAdd is the console's cost per decision record, off the
// request path.
func BenchmarkHubAdd(b *testing.B) {
	h := newHub()
	rec := audit.Record{RequestID: "r", Verdict: "deny", Reason: "device.not_compliant"}
	b.ReportAllocs()
	for b.Loop() {
		h.add(rec, fakeNow)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

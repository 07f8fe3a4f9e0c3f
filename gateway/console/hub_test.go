package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"portcullis/gateway/audit"
)

func TestHubChart(t *testing.T) {
	h := newHub()
	// 30 allowed and 60 denials in the newest bucket, one denial an hour
	// and a half ago (outside the chart).
	now := fakeNow
	h.add(audit.Record{Verdict: "deny", Reason: "old"}, now.Add(-90*time.Minute))
	for i := range 30 {
		h.add(audit.Record{Verdict: "allow"}, now.Add(-time.Duration(i%30)*time.Second))
		h.add(audit.Record{Verdict: "deny", Reason: "device.not_compliant"}, now)
		h.add(audit.Record{Verdict: "login", Reason: "user.login_required"}, now)
	}
	s := h.chart(now, chartBuckets)
	last := chartBuckets - 1
	if s.allowed[last] != 1 || s.denied[last] != 2 {
		t.Errorf("newest bucket: allowed %v/s denied %v/s, want 1 and 2", s.allowed[last], s.denied[last])
	}
	if len(s.reasons) != 2 || s.reasons[0].Count != 30 {
		t.Errorf("reasons = %+v, want two of 30 each, none old", s.reasons)
	}
	if s.total != 91 {
		t.Errorf("total = %d, want 91", s.total)
	}
	c := reasonsChart(s)
	if c.Empty || len(c.Legend) != 2 || len(c.Bars) != 2 {
		t.Errorf("reasons chart: empty %v, legend %v, %d bars", c.Empty, c.Legend, len(c.Bars))
	}
	for _, b := range c.Bars {
		if b.Y < plotTop-0.01 || b.Y+b.H > chartH-plotBottom+0.01 || b.X < plotLeft || b.X+b.W > chartW+0.01 {
			t.Errorf("bar %+v outside the plot", b)
		}
	}
}

func TestHubReasonBound(t *testing.T) {
	h := newHub()
	for i := range maxReasons + 10 {
		h.add(audit.Record{Verdict: "deny", Reason: fmt.Sprintf("r%d", i)}, fakeNow)
	}
	s := h.chart(fakeNow, chartBuckets)
	if len(s.reasons) != maxReasons+1 {
		t.Errorf("%d reasons counted, want %d and %q", len(s.reasons), maxReasons, otherReason)
	}
	if s.reasons[0].Reason != otherReason || s.reasons[0].Count != 10 {
		t.Errorf("most frequent = %+v, want %q ×10", s.reasons[0], otherReason)
	}
}

func TestHubRing(t *testing.T) {
	h := newHub()
	for i := range recentRecords + 5 {
		h.add(audit.Record{RequestID: fmt.Sprint(i)}, fakeNow)
	}
	got := h.recentMatching(func(*audit.Record) bool { return true }, recentRecords+100)
	if len(got) != recentRecords || got[0].RequestID != fmt.Sprint(recentRecords+4) || got[len(got)-1].RequestID != "5" {
		t.Errorf("kept %d, newest %q, oldest %q", len(got), got[0].RequestID, got[len(got)-1].RequestID)
	}
	st, stop := h.subscribe()
	for range streamBuffer + 3 {
		h.add(audit.Record{}, fakeNow) // never blocks on a full stream
	}
	if d := h.droppedFor(st); d != 3 {
		t.Errorf("dropped for a full stream = %d, want 3", d)
	}
	stop()
}

func TestChartEmpty(t *testing.T) {
	c := requestsChart(newHub().chart(fakeNow, chartBuckets))
	if !c.Empty || len(c.Bars) != 0 {
		t.Errorf("empty chart: %+v", c)
	}
	if got := formatRate(1500); got != "1.5k" {
		t.Errorf("formatRate(1500) = %q", got)
	}
	if got := niceCeil(7.3); got != 10 {
		t.Errorf("niceCeil(7.3) = %v", got)
	}
	if !strings.Contains(age(fakeNow, fakeNow.Add(-3*time.Hour)), "3h") {
		t.Error("age of three hours")
	}
}

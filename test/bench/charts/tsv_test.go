package main

import (
	"math"
	"strings"
	"testing"
)

func TestParseSummary(t *testing.T) {
	tests := []struct {
		name, in string
		want     []summaryRow
		err      bool
	}{
		{"row", "tls_h1_64\tgoproxy\t31000\t30000\t32000\t1.900\t4.100\t0.0000\t99\t100\t3\t75.6\t20.1\n",
			[]summaryRow{{Scenario: "tls_h1_64", Target: "goproxy", RPS: 31000, P50: 1.9, P99: 4.1, CPUPerReq: 75.6}}, false},
		{"not measured", "h3_64\tnginx\tn/a\t-\t-\t-\t-\t0\t0\t0\t0\t-\t-\n", []summaryRow{{Scenario: "h3_64", Target: "nginx"}}, false},
		{"short", "tls_h1_64\tgoproxy\t31000\n", nil, true},
		{"negative", "a\tb\t-5\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n", nil, true},
		{"text", "a\tb\tfast\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSummary(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if len(got) != len(tt.want) || len(got) > 0 && got[0] != tt.want[0] {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLatency(t *testing.T) {
	in := "scenario\ttarget\tload_pct\trate\tp50_ms\tp99_ms\tp999_ms\n" +
		"tls_h1\tportcullis\t50\t12000\t0.4\t2.5\t7.75\n"
	got, err := parseLatency(in)
	if err != nil {
		t.Fatal(err)
	}
	want := latencyRow{Scenario: "tls_h1", Target: "portcullis", LoadPct: 50, P50: 0.4, P99: 2.5, P999: 7.75}
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseLatency("scenario\ttarget\n"); err == nil {
		t.Error("accepted a file without the latency columns")
	}
}

// TestChartDeterministic: the committed charts must regenerate byte for
// byte, and unmeasured cells draw no bar.
func TestChartDeterministic(t *testing.T) {
	rows, err := parseSummary("b\tportcullis\t10\t0\t0\t0\t0\t0\t0\t0\t1\t5\t0\n" +
		"a\tgoproxy\t20\t0\t0\t0\t0\t0\t0\t0\t1\t4\t0\n" + "a\tportcullis\tn/a\t0\t0\t0\t0\t0\t0\t0\t1\t0\t0\n")
	if err != nil {
		t.Fatal(err)
	}
	d := groupSummary(rows, func(r summaryRow) float64 { return r.RPS })
	if d.groups[0] != "a" || d.series[0] != "goproxy" || !math.IsNaN(d.values[0][1]) {
		t.Errorf("data = %+v", d)
	}
	one, two := barChart("t", "u", d), barChart("t", "u", d)
	if one != two {
		t.Error("two renderings differ")
	}
	if n := strings.Count(one, "<title>"); n != 2 {
		t.Errorf("%d bars, want 2", n)
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add("tls_h1_64\tgoproxy\t31000\t30000\t32000\t1.900\t4.100\t0.0000\t99\t100\t3\t75.6\t20.1\n")
	f.Add("h3_64\tnginx\tn/a\t-\t-\t-\t-\t0\t0\t0\t0\t-\t-\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := parseSummary(in)
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.RPS < 0 || r.CPUPerReq < 0 || math.IsNaN(r.RPS) || r.Scenario == "" {
				t.Fatalf("accepted %+v", r)
			}
		}
		barChart("t", "u", groupSummary(rows, func(r summaryRow) float64 { return r.RPS }))
	})
}

func FuzzParseLatency(f *testing.F) {
	f.Add("scenario\ttarget\tload_pct\tp50_ms\tp99_ms\tp999_ms\ntls_h1\tgoproxy\t50\t0.3\t1\t2\n")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := parseLatency(in)
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.P99 < 0 || math.IsNaN(r.P999) || r.Target == "" {
				t.Fatalf("accepted %+v", r)
			}
		}
		barChart("t", "u", groupLatency(rows, func(r latencyRow) float64 { return r.P99 }))
	})
}

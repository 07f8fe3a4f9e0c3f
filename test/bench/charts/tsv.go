package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// summaryRow is one line of the harness's summary.tsv (no header): a
// target's medians in one scenario.
type summaryRow struct {
	Scenario, Target string
	RPS              float64 // median requests per second
	P50, P99         float64 // closed-loop latency, ms
	CPUPerReq        float64 // the target's CPU µs per request; 0 when not measured
}

// latencyRow is one line of latency.tsv (written by latency.sh, with a
// header): a target at one fixed rate in one scenario.
type latencyRow struct {
	Scenario, Target string
	LoadPct          float64
	P50, P99, P999   float64 // ms, from each request's scheduled time
}

// parseSummary reads summary.tsv: 13 tab-separated columns, scenario,
// target, rps, min, max, p50, p99, errors, load busy, target busy,
// rounds, proxy CPU µs per request, upstream CPU µs per request.
func parseSummary(text string) ([]summaryRow, error) {
	var rows []summaryRow
	for i, line := range lines(text) {
		f := strings.Split(line, "\t")
		if len(f) != 13 {
			return nil, fmt.Errorf("summary line %d: %d columns, want 13", i+1, len(f))
		}
		r := summaryRow{Scenario: f[0], Target: f[1]}
		var err error
		for _, c := range []struct {
			dst *float64
			col int
		}{{&r.RPS, 2}, {&r.P50, 5}, {&r.P99, 6}, {&r.CPUPerReq, 11}} {
			if *c.dst, err = number(f[c.col]); err != nil {
				return nil, fmt.Errorf("summary line %d column %d: %w", i+1, c.col+1, err)
			}
		}
		if r.Scenario == "" || r.Target == "" {
			return nil, fmt.Errorf("summary line %d: empty scenario or target", i+1)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// parseLatency reads latency.tsv, whose first line names the columns.
func parseLatency(text string) ([]latencyRow, error) {
	ls := lines(text)
	if len(ls) == 0 {
		return nil, errors.New("latency: empty file")
	}
	col := map[string]int{}
	for i, name := range strings.Split(ls[0], "\t") {
		col[name] = i
	}
	for _, name := range []string{"scenario", "target", "load_pct", "p50_ms", "p99_ms", "p999_ms"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("latency: no column %q", name)
		}
	}
	var rows []latencyRow
	for i, line := range ls[1:] {
		f := strings.Split(line, "\t")
		if len(f) != len(col) {
			return nil, fmt.Errorf("latency line %d: %d columns, want %d", i+2, len(f), len(col))
		}
		r := latencyRow{Scenario: f[col["scenario"]], Target: f[col["target"]]}
		var err error
		for _, c := range []struct {
			dst  *float64
			name string
		}{{&r.LoadPct, "load_pct"}, {&r.P50, "p50_ms"}, {&r.P99, "p99_ms"}, {&r.P999, "p999_ms"}} {
			if *c.dst, err = number(f[col[c.name]]); err != nil {
				return nil, fmt.Errorf("latency line %d column %s: %w", i+2, c.name, err)
			}
		}
		if r.Scenario == "" || r.Target == "" {
			return nil, fmt.Errorf("latency line %d: empty scenario or target", i+2)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// number reads a finite, non-negative number; "", "-" and "n/a" (what the
// harness writes when it measured nothing) read as 0.
func number(s string) (float64, error) {
	switch s {
	case "", "-", "n/a":
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < 0 || v != v || v > 1e15 {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return v, nil
}

// lines splits text into its non-empty lines.
func lines(text string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

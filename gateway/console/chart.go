package console

import (
	"fmt"
	"math"
	"strconv"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 720.0, 180.0
	plotLeft       = 44.0
	plotTop        = 8.0
	plotBottom     = 20.0 // room for the time axis
	chartBuckets   = 120  // 30-second buckets over the hour
	reasonSeries   = 5    // reasons drawn on their own; the rest are "other"
)

// chart is a stacked bar chart, laid out for the template.
type chart struct {
	ID     string
	Title  string
	Desc   string
	Width  float64
	Height float64
	Bars   []bar
	Legend []legendItem
	YTicks []tick
	XTicks []tick
	Empty  bool
}

type bar struct {
	X, Y, W, H float64
	Class      string
}

type legendItem struct {
	Class string
	Label string
}

type tick struct {
	Pos    float64
	Label  string
	Anchor string // text-anchor of an x-axis label
}

// layer is one series of a stacked chart.
type layer struct {
	label  string
	values []float64
}

// stacked lays layers out bottom to top, one bar per bucket.
func stacked(id, title, desc string, layers []layer) chart {
	c := chart{ID: id, Title: title, Desc: desc, Width: chartW, Height: chartH}
	n := 0
	if len(layers) > 0 {
		n = len(layers[0].values)
	}
	peak := 0.0
	for i := range n {
		sum := 0.0
		for _, l := range layers {
			sum += l.values[i]
		}
		peak = math.Max(peak, sum)
	}
	c.Empty = peak == 0
	top := niceCeil(peak)
	plotW, plotH := chartW-plotLeft, chartH-plotTop-plotBottom
	bw := plotW / float64(max(n, 1))
	for i := range n {
		y := plotTop + plotH
		for k, l := range layers {
			h := l.values[i] / top * plotH
			if h <= 0 {
				continue
			}
			y -= h
			c.Bars = append(c.Bars, bar{X: round2(plotLeft + float64(i)*bw), Y: round2(y), W: round2(math.Max(bw-1, 1)), H: round2(h),
				Class: "s" + strconv.Itoa(k)})
		}
	}
	for k, l := range layers {
		c.Legend = append(c.Legend, legendItem{Class: "s" + strconv.Itoa(k), Label: l.label})
	}
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, tick{Pos: round2(plotTop + plotH*(1-f)), Label: formatRate(top * f)})
	}
	for _, m := range []int{60, 45, 30, 15, 0} {
		t := tick{Pos: round2(plotLeft + plotW*float64(60-m)/60), Label: "now", Anchor: "end"}
		if m > 0 {
			t.Label, t.Anchor = fmt.Sprintf("−%d min", m), "middle"
		}
		if m == 60 {
			t.Anchor = "start"
		}
		c.XTicks = append(c.XTicks, t)
	}
	return c
}

// requestsChart draws allowed and denied requests per second.
func requestsChart(s series) chart {
	return stacked("chart-requests", "Requests per second, last hour",
		"Allowed and denied requests per second in 30-second buckets over the last hour.",
		[]layer{{"allowed", s.allowed}, {"denied", s.denied}})
}

// reasonsChart draws denials per second by reason: the most frequent
// reasons of the hour, and the rest as one layer.
func reasonsChart(s series) chart {
	var layers []layer
	var other []float64
	for i, rt := range s.reasons {
		if i < reasonSeries {
			layers = append(layers, layer{rt.Reason, s.byReason[i]})
			continue
		}
		if other == nil {
			other = make([]float64, len(s.byReason[i]))
		}
		for b, v := range s.byReason[i] {
			other[b] += v
		}
	}
	if other != nil {
		layers = append(layers, layer{"other reasons", other})
	}
	return stacked("chart-reasons", "Denials per second by reason, last hour",
		"Denied requests per second in 30-second buckets over the last hour, stacked by reason code.", layers)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, at least 1.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// formatRate writes a per-second rate briefly: 0, 0.25, 12, 1.5k.
func formatRate(v float64) string {
	switch {
	case v > 0 && v < 0.01:
		return "<0.01"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	case v >= 10 || v == math.Trunc(v):
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	default:
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
}

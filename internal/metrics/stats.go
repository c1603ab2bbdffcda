package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Stat is one sample, or one family of samples, read from a snapshot S of
// some Stats() struct.
type Stat[S any] struct {
	Name   string
	Help   string
	Type   prometheus.ValueType
	Labels prometheus.Labels // constant labels, e.g. tier="http"
	// Value reads a single sample. Either Value or Each is set.
	Value func(S) float64
	// Each reads a family keyed by one variable label, Label (e.g. the
	// rdma fallbacks by reason).
	Label string
	Each  func(S) map[string]float64
}

// number is what Stats structs count in.
type number interface {
	~int | ~int64 | ~uint64 | ~int32 | ~uint32 | ~float64
}

// counter is a monotonically increasing Stats field.
func counter[S any, N number](name, help string, l prometheus.Labels, f func(S) N) Stat[S] {
	return Stat[S]{Name: name, Help: help, Type: prometheus.CounterValue, Labels: l, Value: func(s S) float64 { return float64(f(s)) }}
}

// gauge is a Stats field that goes up and down.
func gauge[S any, N number](name, help string, l prometheus.Labels, f func(S) N) Stat[S] {
	return Stat[S]{Name: name, Help: help, Type: prometheus.GaugeValue, Labels: l, Value: func(s S) float64 { return float64(f(s)) }}
}

// counters is a map-valued Stats field, one counter per key.
func counters[S any, N number](name, help string, l prometheus.Labels, label string, f func(S) map[string]N) Stat[S] {
	return Stat[S]{Name: name, Help: help, Type: prometheus.CounterValue, Labels: l, Label: label,
		Each: func(s S) map[string]float64 {
			out := map[string]float64{}
			for k, v := range f(s) {
				out[k] = float64(v)
			}
			return out
		}}
}

// tier labels a sample with the layer that served it.
func tier(name string) prometheus.Labels { return prometheus.Labels{"tier": name} }

// Statser is anything with counters: the page cache, a fetcher, the rdma
// server. Stats is called on every scrape, concurrently with the work it
// counts (and with another scrape), so it must be safe for concurrent use.
type Statser[S any] interface {
	Stats() S
}

// StatsCollector is a prometheus.Collector that takes one snapshot of a
// Statser per scrape and reports a table of Stats from it.
type StatsCollector[S any] struct {
	src   Statser[S]
	stats []Stat[S]
	descs []*prometheus.Desc
}

// NewStatsCollector returns a collector of stats, read from src.
func NewStatsCollector[S any](src Statser[S], stats []Stat[S]) *StatsCollector[S] {
	c := &StatsCollector[S]{src: src, stats: stats}
	for _, st := range stats {
		var vars []string
		if st.Each != nil {
			vars = []string{st.Label}
		}
		c.descs = append(c.descs, prometheus.NewDesc(st.Name, st.Help, vars, st.Labels))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *StatsCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StatsCollector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	for i, st := range c.stats {
		if st.Each == nil {
			ch <- prometheus.MustNewConstMetric(c.descs[i], st.Type, st.Value(s))
			continue
		}
		for k, v := range st.Each(s) {
			ch <- prometheus.MustNewConstMetric(c.descs[i], st.Type, v, k)
		}
	}
}

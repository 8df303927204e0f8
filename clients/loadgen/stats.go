package main

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// latencies collects durations and summarises them. Every observation is
// kept: a run is bounded (at most a few million batches, 8 bytes each), and
// exact percentiles avoid arguing about histogram bucket error in the
// figures we report.
type latencies []time.Duration

// summary is a latency distribution in milliseconds, as reported.
type summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// summarise sorts l in place and returns its p50, p95, p99 and max.
func (l latencies) summarise() summary {
	if len(l) == 0 {
		return summary{}
	}
	slices.Sort(l)
	return summary{Count: len(l), P50: ms(l.percentile(50)), P95: ms(l.percentile(95)),
		P99: ms(l.percentile(99)), Max: ms(l[len(l)-1])}
}

// percentile returns the nearest-rank p-th percentile of sorted l: the
// smallest observation with at least p% of all observations at or below it.
// Nearest rank never invents a value that was not observed, and p100 is the
// maximum.
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	// rank = ⌈p/100 · n⌉, computed in integers so 95% of 100 is exactly 95.
	rank := (int(p*100)*len(l) + 9999) / 10000
	rank = max(1, min(rank, len(l)))
	return l[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// errorCounts counts errors by kind, and keeps the first message of each so
// a failed run says why. Safe for concurrent use.
type errorCounts struct {
	mu    sync.Mutex
	n     map[string]int64
	first map[string]string
}

func (e *errorCounts) add(kind string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n, e.first = map[string]int64{}, map[string]string{}
	}
	e.n[kind]++
	if _, ok := e.first[kind]; !ok && err != nil {
		e.first[kind] = err.Error()
	}
}

// addN adds n errors of kind without a message (unacknowledged batches).
func (e *errorCounts) addN(kind string, n int64) {
	if n == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n, e.first = map[string]int64{}, map[string]string{}
	}
	e.n[kind] += n
}

func (e *errorCounts) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var t int64
	for _, v := range e.n {
		t += v
	}
	return t
}

func (e *errorCounts) snapshot() (map[string]int64, map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.n), maps.Clone(e.first)
}

// rate is n per second of d, 0 for an empty interval.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

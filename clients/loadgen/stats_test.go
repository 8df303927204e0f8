package main

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func msList(vals ...int) latencies {
	l := make(latencies, len(vals))
	for i, v := range vals {
		l[i] = time.Duration(v) * time.Millisecond
	}
	return l
}

// Nearest rank: the smallest observation with at least p% at or below it.
func TestPercentile(t *testing.T) {
	hundred := make(latencies, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	for _, tc := range []struct {
		name string
		l    latencies
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", msList(7), 50, 7 * time.Millisecond},
		{"one p99", msList(7), 99, 7 * time.Millisecond},
		{"two p50 is the lower", msList(1, 2), 50, 1 * time.Millisecond},
		{"two p51 is the upper", msList(1, 2), 51, 2 * time.Millisecond},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p95 exactly", hundred, 95, 95 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p100 is max", hundred, 100, 100 * time.Millisecond},
		{"hundred p0 is min", hundred, 0, 1 * time.Millisecond},
		{"ten p95 rounds up to the max", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 95, 10 * time.Millisecond},
		{"ten p90", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	} {
		if got := tc.l.percentile(tc.p); got != tc.want {
			t.Errorf("%s: p%v = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

// summarise sorts first, so the order observations arrived in (acks from
// many streams interleaved) does not matter.
func TestSummariseUnsorted(t *testing.T) {
	l := make(latencies, 1000)
	for i := range l {
		l[i] = time.Duration(i+1) * time.Millisecond
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	got := l.summarise()
	want := summary{Count: 1000, P50: 500, P95: 950, P99: 990, Max: 1000}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if (latencies{}).summarise() != (summary{}) {
		t.Error("an empty summary is not zero")
	}
}

func TestErrorCounts(t *testing.T) {
	var e errorCounts
	e.add("stream ended: Unavailable", errors.New("first"))
	e.add("stream ended: Unavailable", errors.New("second"))
	e.addN("unacknowledged", 3)
	e.addN("never", 0)
	if e.total() != 5 {
		t.Errorf("total = %d, want 5", e.total())
	}
	n, first := e.snapshot()
	if n["stream ended: Unavailable"] != 2 || n["unacknowledged"] != 3 || len(n) != 2 {
		t.Errorf("counts %v", n)
	}
	if first["stream ended: Unavailable"] != "first" {
		t.Errorf("first message %q, want the first one", first["stream ended: Unavailable"])
	}
}

func TestRate(t *testing.T) {
	if got := rate(500, 2*time.Second); got != 250 {
		t.Errorf("rate = %v, want 250", got)
	}
	if got := rate(500, 0); got != 0 {
		t.Errorf("rate over nothing = %v, want 0", got)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

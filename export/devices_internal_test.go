package export

import (
	"testing"

	"perfusion/charting"
)

func TestTrendPeriod(t *testing.T) {
	const minute = int64(60_000)
	span := func(minutes int64) []charting.SourcedSeries {
		return []charting.SourcedSeries{
			{SourceID: "a", Series: charting.Series{Channel: "pump_flow", TimesMs: []int64{1_000_000}}},
			{SourceID: "b", Series: charting.Series{Channel: "map", TimesMs: []int64{1_000_000 + minutes*minute}}},
		}
	}
	for _, tc := range []struct {
		minutes, want int64
	}{
		{0, minute},
		{240, minute},          // a 4-hour CPB case: one-minute means
		{1400, minute},         // under a day
		{2 * 1400, 2 * minute}, // two days: two minutes
		{7 * 1440, 8 * minute}, // a week: at most 1,440 points (10,082 / 8 = 1,261)
	} {
		got := trendPeriod(span(tc.minutes))
		if got != tc.want {
			t.Errorf("span %d min: period %d ms, want %d", tc.minutes, got, tc.want)
		}
		if points := tc.minutes*minute/got + 2; points > MaxTrendPoints+1 {
			t.Errorf("span %d min: %d points at %d ms", tc.minutes, points, got)
		}
	}
	if got := trendPeriod(nil); got != TrendPeriodMs {
		t.Errorf("no data: %d", got)
	}
}

package export

import (
	"fmt"
	"math"
	"slices"
	"time"

	"perfusion/charting"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
)

// TrendPeriodMs is the sampling period of exported device data: one-minute
// means. A minute is the resolution of a paper perfusion chart and of the
// usual device feed into an EHR flowsheet; a 4-hour case is 240 values a
// channel, a few kilobytes of FHIR SampledData, where the raw 1-Hz data
// would be 14,400. The full-resolution record stays in this service
// (QuerySamples, `perfusionctl samples export`).
const TrendPeriodMs = 60_000

// MaxTrendPoints bounds the points of one exported channel. A run longer
// than a day (ECMO runs last days to weeks) is exported in periods of
// whole minutes long enough to stay within it — two minutes for a run of
// up to about two days, three up to three, and so on — so a month-long run
// still makes a message an interface engine accepts.
const MaxTrendPoints = 1440

// trendPeriod is TrendPeriodMs, lengthened by whole minutes for runs of
// more than MaxTrendPoints minutes.
func trendPeriod(series []charting.SourcedSeries) int64 {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, ss := range series {
		if n := len(ss.Series.TimesMs); n > 0 {
			lo, hi = min(lo, slices.Min(ss.Series.TimesMs)), max(hi, slices.Max(ss.Series.TimesMs))
		}
	}
	if hi < lo {
		return TrendPeriodMs
	}
	minutes := (hi-lo)/TrendPeriodMs + 2 // slots touched, at worst
	return TrendPeriodMs * max(1, (minutes+MaxTrendPoints-1)/MaxTrendPoints)
}

// trends resamples a version's device data for export, each value rounded
// to one digit more than the channel's device resolution (a mean is finer
// than one reading, not arbitrarily so), and returns the period used.
func (r *Renderer) trends(v *Version) ([]charting.RegularSeries, int64) {
	period := trendPeriod(v.Series)
	out := charting.RegularTrends(v.Series, v.Current, period, r.cat)
	for _, ss := range out {
		d := decimals(r.cat.Resolution(ss.Series.Channel)) + 1
		for i, x := range ss.Series.Values {
			ss.Series.Values[i] = round(x, d)
		}
	}
	return out, period
}

// decimals is how many decimal places a resolution needs (0.01 → 2); an
// unknown resolution keeps three.
func decimals(res float64) int {
	if res <= 0 || math.IsInf(res, 0) || math.IsNaN(res) {
		return 3
	}
	return max(0, int(math.Ceil(-math.Log10(res)-1e-9)))
}

// fhirDevices returns a Device per source of the trends, sorted by source
// ID, and the trends as FHIR sends them. The heart-lung machine (or ECMO
// console) is the source of arterial pump flow, the one channel only such
// a machine reports; with no pump flow no device is marked as one.
func (r *Renderer) fhirDevices(trends []charting.RegularSeries, period int64) ([]fhir.DeviceInfo, []fhir.Trend) {
	system := r.fhir.DeviceSystem
	if system == "" {
		system = fhir.DefaultDeviceSystem
	}
	hlm := ""
	var sources []string
	out := make([]fhir.Trend, 0, len(trends))
	for _, ss := range trends {
		if ss.Series.Channel == "pump_flow" {
			hlm = ss.SourceID
		}
		if !slices.Contains(sources, ss.SourceID) {
			sources = append(sources, ss.SourceID)
		}
		out = append(out, fhir.Trend{SourceID: ss.SourceID, Series: ss.Series, PeriodMs: period, OutOfRange: ss.OutOfRange})
	}
	slices.Sort(sources)
	devs := make([]fhir.DeviceInfo, 0, len(sources))
	for _, s := range sources {
		devs = append(devs, fhir.DeviceInfo{SourceID: s, Identifier: fhir.Identifier{System: system, Value: s},
			Name: s, HeartLungMachine: s == hlm})
	}
	return devs, out
}

// DeviceReportKind is the message kind of the device report's MSH-10
// (v2.ControlID).
const DeviceReportKind = "oru-pcd01"

// DeviceReport renders a loaded version's device data as an IHE PCD-01
// ORU^R01 (MSH-21 IHE_PCD_001): one OBR per minute, each with the
// MDS/VMD/channel/metric OBX hierarchy of every source that had data in it
// (v2.BuildDeviceReport). A minute whose samples were all invalid or marked
// artifact is sent as an invalid reading (no value, flagged INV), so the
// receiver sees the gap. Readings outside the channel's plausible range are
// left out of the minute's mean like invalid ones; a minute that had only
// such readings is sent without a value, flagged "<" or ">" (below or
// above the range). The summary ORU^R01 stays small; this is the
// message for a receiver that wants the device data as flowsheet rows.
func (r *Renderer) DeviceReport(v *Version) (*Rendered, error) {
	trends, period := r.trends(v)
	var obs []v2.DeviceObservation
	monitorOnly := make(map[string]bool) // source → carries only patient-monitor channels
	for _, ss := range trends {
		s := ss.Series
		ch, _ := r.cat.Lookup(s.Channel)
		only, seen := monitorOnly[ss.SourceID]
		monitorOnly[ss.SourceID] = (only || !seen) && ch.Source == charting.SourcePatientMonitor
		for i, t := range s.TimesMs {
			o := v2.DeviceObservation{SourceID: ss.SourceID, Channel: s.Channel,
				Time: timeMs(t), Value: s.Values[i], Invalid: s.IsInvalid(i)}
			if ss.OutOfRange != nil && ss.OutOfRange[i] != 0 {
				o.Invalid, o.OutOfRange = false, int(ss.OutOfRange[i])
			}
			obs = append(obs, o)
		}
	}
	if len(obs) == 0 {
		return nil, fmt.Errorf("%w: the case has no device data", ErrContent)
	}
	c := v.Case
	visit := v2.VisitFromCase(c)
	visit.PointOfCare = r.hl7.PointOfCare
	h := r.Header(v)
	h.ControlID = v2.ControlID(DeviceReportKind, c.ID, v.Number)
	// A source of patient-monitor channels is a physiological monitor: its
	// MDS row takes the MDC device code; other sources (heart-lung machine,
	// blender, …) have no MDC device term and keep the local one.
	var devices []v2.Device
	for src, only := range monitorOnly {
		if only {
			devices = append(devices, v2.Device{SourceID: src, Type: v2.MDCMonitorMDS})
		}
	}
	m, err := v2.BuildDeviceReport(h, &v2.DeviceReport{Kind: c.Kind, Patient: c.Details.Patient, Visit: visit,
		Observations: obs, Catalogue: r.cat, Devices: devices, Period: time.Duration(period) * time.Millisecond})
	return encodeHL7(h, m, err)
}

// timeMs is a sample time as a time.Time in UTC; message builders write it
// in their configured zone.
func timeMs(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

package v2

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"perfusion/charting"
)

// PCD01Profile is MSH-21 of a PCD-01 device report: the IHE PCD message
// profile identifier with its OID.
func PCD01Profile() Field {
	return Comps("IHE_PCD_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.1.1.1", "ISO")
}

// DeviceObservation is one device reading: what the device reported on a
// channel at a time. The unit is the channel's (charting.Channel.Unit).
type DeviceObservation struct {
	SourceID string    // the data source (device or gateway port) as ingested
	Channel  string    // catalogue key
	Time     time.Time // when the device measured it (device clock, as recorded)
	Value    float64   // in the channel's unit
	// Invalid marks a reading the device flagged as invalid (e.g. dashes):
	// it is sent without a value, flagged INV, never as 0.
	Invalid bool
	// OutOfRange is -1 (or +1) for a slot whose readings all lay below (or
	// above) the channel's plausible range (charting.Channel.Plausible):
	// sent without a value, OBX-8 "<" (or ">"), HL7 table 0078's "below
	// low / above high scale", OBX-11 X. 0 otherwise.
	OutOfRange int
}

// Device describes one data source for its PCD-01 MDS row.
type Device struct {
	SourceID string // matches DeviceObservation.SourceID
	// Type is OBX-3 of the MDS row, e.g. an MDC device code; zero means the
	// local device_mds code (no MDC term exists for a heart-lung machine).
	Type Code
	// Equipment is OBX-18 of the MDS row: EUI64(...) when the device has
	// one, else serial^model^manufacturer^DNS. Zero means the source ID in
	// the sending application's namespace.
	Equipment EI
}

// DeviceReport is the content of a PCD-01 device observation report.
type DeviceReport struct {
	Kind         charting.Kind       // OBR-4 names the procedure the data belongs to
	Patient      charting.Patient    // PID
	Visit        Visit               // PV1
	Devices      []Device            // optional: MDS code and equipment ID per source
	Observations []DeviceObservation // the readings, any order
	// Catalogue gives codes, units and resolutions; nil means
	// charting.DefaultCatalogue.
	Catalogue *charting.Catalogue
	// Period, when set, makes each observation a value over the interval
	// [Time, Time+Period) (e.g. a one-minute mean): OBR-7/OBR-8 carry the
	// interval and the metric rows have no OBX-14, which IHE PCD TF-2
	// reads as an overriding time point (an episodic value). Zero sends
	// point values: OBR-7 and OBX-14 the time, no OBR-8.
	Period time.Duration
}

// MDCMonitorMDS is the MDS code IHE PCD TF-2 (Appendix E) gives a
// multi-parameter physiological monitor.
var MDCMonitorMDS = Code{Code: "69965", Text: "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", System: SystemMDC}

// BuildDeviceReport builds an IHE PCD-01 ORU^R01 (MSH-21 IHE_PCD_001):
// MSH, PID, PV1, then for each distinct observation time an OBR (OBR-7 the
// time) with the device hierarchy of DeviceOBX. One OBR per time keeps each
// OBX-4 unique within its OBR, as PCD requires, when a report holds several
// readings of one channel.
func BuildDeviceReport(h Header, r *DeviceReport) (*Message, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	proc, ok := ProcedureCode(r.Kind)
	if !ok {
		return nil, fmt.Errorf("hl7: device report: kind must be cpb or ecmo")
	}
	if len(r.Observations) == 0 {
		return nil, fmt.Errorf("hl7: device report: no observations")
	}
	pidSeg, err := pid(r.Patient)
	if err != nil {
		return nil, err
	}
	m := &Message{Segments: []Segment{h.msh(summaryMessageType(), PCD01Profile(), true), pidSeg, pv1(r.Visit)}}

	devices := slices.Clone(r.Devices)
	for i := range devices {
		if devices[i].Equipment == (EI{}) {
			devices[i].Equipment = defaultEquipment(h, devices[i].SourceID)
		}
	}
	for _, o := range r.Observations {
		if !slices.ContainsFunc(devices, func(d Device) bool { return d.SourceID == o.SourceID }) {
			devices = append(devices, Device{SourceID: o.SourceID, Equipment: defaultEquipment(h, o.SourceID)})
		}
	}
	// One numbering of sources for the whole report, so a device keeps its
	// MDS number in every OBR.
	slices.SortStableFunc(devices, func(a, b Device) int { return strings.Compare(a.SourceID, b.SourceID) })

	idx := make([]int, len(r.Observations))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int { return r.Observations[i].Time.Compare(r.Observations[j].Time) })
	setID, obrN := 1, 0
	for start := 0; start < len(idx); {
		t := r.Observations[idx[start]].Time
		end := start
		var group []DeviceObservation
		for end < len(idx) && r.Observations[idx[end]].Time.Equal(t) {
			group = append(group, r.Observations[idx[end]])
			end++
		}
		if t.IsZero() {
			return nil, fmt.Errorf("hl7: device report: observations[%d]: no time", idx[start])
		}
		obrN++
		obr := Segment{ID: "OBR"}
		obr.SetField(1, Text(strconv.Itoa(obrN)))
		a := h.SendingApplication
		obr.SetField(3, Comps(h.ControlID+"-"+strconv.Itoa(obrN), a.NamespaceID, a.UniversalID, a.UniversalIDType))
		obr.SetField(4, proc.field())
		obr.SetField(7, Text(h.formatTime(t)))
		if r.Period > 0 {
			obr.SetField(8, Text(h.formatTime(t.Add(r.Period))))
		}
		m.Segments = append(m.Segments, obr)
		rows, err := deviceOBX(r.Catalogue, devices, group, setID, h.Location, r.Period > 0)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, rows...)
		setID += len(rows)
		start = end
	}
	if err := finish(m); err != nil {
		return nil, err
	}
	return Canonical(m), nil
}

func defaultEquipment(h Header, sourceID string) EI {
	a := h.SendingApplication
	return EI{EntityID: sourceID, NamespaceID: a.NamespaceID, UniversalID: a.UniversalID, UniversalIDType: a.UniversalIDType}
}

// DeviceOBX renders device observations as PCD-01 OBX rows in the IEEE
// 11073 containment hierarchy, in dictionary order of OBX-4:
//
//	d.0.0.0  MDS row per data source (OBX-11 X, OBX-18 equipment)
//	d.1.0.0  VMD row (X)
//	d.1.1.0  channel row (X)
//	d.1.1.N  one metric per catalogue channel: OBX-3 its MDC code with
//	         its reference ID (the name where the catalogue has none) or
//	         its 99PERF code, OBX-5 the value at the channel's resolution, OBX-6 UCUM,
//	         OBX-11 R (raw device data), OBX-14 its time, OBX-17 AMEAS
//
// Sources are numbered d = 1, 2, … in the order of devices, then any
// source not in devices in source-ID order; the metric number N is the
// channel's position in the catalogue, so a channel keeps its OBX-4 from
// one report to the next. Each (source, channel) may appear once;
// rows are numbered from firstSetID (OBX-1 counts through the message).
func DeviceOBX(cat *charting.Catalogue, devices []Device, obs []DeviceObservation, firstSetID int, loc *time.Location) ([]Segment, error) {
	return deviceOBX(cat, devices, obs, firstSetID, loc, false)
}

// deviceOBX is DeviceOBX; interval leaves OBX-14 out of the metric rows,
// which then take the interval of their OBR (OBR-7/OBR-8).
func deviceOBX(cat *charting.Catalogue, devices []Device, obs []DeviceObservation, firstSetID int, loc *time.Location, interval bool) ([]Segment, error) {
	if cat == nil {
		cat = charting.DefaultCatalogue()
	}
	metricNo := make(map[string]int)
	for i, ch := range cat.Channels() {
		metricNo[ch.Key] = i + 1
	}
	type row struct {
		source int
		metric int
		o      DeviceObservation
	}
	var sources, unlisted []string
	for _, d := range devices {
		sources = append(sources, d.SourceID)
	}
	for _, o := range obs {
		if !slices.Contains(sources, o.SourceID) && !slices.Contains(unlisted, o.SourceID) {
			unlisted = append(unlisted, o.SourceID)
		}
	}
	slices.Sort(unlisted)
	sources = append(sources, unlisted...)
	rows := make([]row, 0, len(obs))
	seen := make(map[[2]string]bool)
	for i, o := range obs {
		n, ok := metricNo[o.Channel]
		if !ok {
			return nil, fmt.Errorf("hl7: device observations[%d]: unknown channel", i)
		}
		if o.SourceID == "" {
			return nil, fmt.Errorf("hl7: device observations[%d]: no source ID", i)
		}
		if _, err := formatNumber(o.Value); err != nil && !o.Invalid && o.OutOfRange == 0 {
			return nil, fmt.Errorf("hl7: device observations[%d]: %w", i, err)
		}
		k := [2]string{o.SourceID, o.Channel}
		if seen[k] {
			return nil, fmt.Errorf("hl7: device observations[%d]: source and channel appear twice", i)
		}
		seen[k] = true
		rows = append(rows, row{source: slices.Index(sources, o.SourceID) + 1, metric: n, o: o})
	}
	slices.SortFunc(rows, func(a, b row) int {
		if a.source != b.source {
			return a.source - b.source
		}
		return a.metric - b.metric
	})

	b := &oruBuilder{h: Header{Location: loc}, setID: firstSetID - 1}
	for i, r := range rows {
		d := strconv.Itoa(r.source)
		if i == 0 || rows[i-1].source != r.source {
			dev := Device{SourceID: r.o.SourceID}
			if j := slices.IndexFunc(devices, func(x Device) bool { return x.SourceID == r.o.SourceID }); j >= 0 {
				dev = devices[j]
			}
			mds := dev.Type
			if mds == (Code{}) {
				mds = localCode(CodeDeviceMDS)
			}
			eq := dev.Equipment
			if eq == (EI{}) {
				eq = EI{EntityID: dev.SourceID}
			}
			b.addOBX(obx{code: mds, subID: d + ".0.0.0", status: "X", equipment: eq.field()})
			b.addOBX(obx{code: localCode(CodeDeviceVMD), subID: d + ".1.0.0", status: "X"})
			b.addOBX(obx{code: localCode(CodeDeviceChannel), subID: d + ".1.1.0", status: "X"})
		}
		ch, _ := cat.Lookup(r.o.Channel)
		code := Code{Code: ch.Code, Text: ch.Name, System: ch.CodeSystem}
		if ch.RefID != "" {
			// IHE PCD TF-2: OBX-3.2 is the MDC reference ID.
			code.Text = ch.RefID
		}
		o := obx{valueType: "NM", code: code,
			subID: d + ".1.1." + strconv.Itoa(r.metric), units: ucumAlt(ch.Unit), status: "R", at: r.o.Time,
			method: Comps("AMEAS", "auto-measurement", SystemMDC)}
		if interval {
			o.at = time.Time{}
		}
		switch {
		case r.o.Invalid:
			// The device said the reading is invalid: no value, flag INV
			// (IEEE 11073 MeasurementStatus invalid), status X.
			o.abnormal, o.status = Text("INV"), "X"
		case r.o.OutOfRange < 0:
			// Readings outside the plausible range are kept out of values
			// sent as measurements, like invalid ones, but said to be
			// there: below the scale.
			o.abnormal, o.status = Text("<"), "X"
		case r.o.OutOfRange > 0:
			o.abnormal, o.status = Text(">"), "X"
		default:
			v, _ := formatAtResolution(r.o.Value, ch.Resolution) // finite: checked above
			o.value = Text(v)
		}
		b.addOBX(o)
	}
	return b.m.Segments, nil
}

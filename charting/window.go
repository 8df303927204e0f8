package charting

import "time"

// Clinical time windows. The record is append-only, so a time that cannot
// belong to the case (an entry dated 1970, a case scheduled in 9999) would
// stay in it for good and drive every time-based metric. The data
// dictionary asks for operator-entered times far outside the case to be
// refused with the window named, and for device times far outside it to be
// kept as sent but never allowed to drive a trend range, a bucket width, a
// metric or an export. These constants are that window.
const (
	// MaxLeadTime is how long before a case was created (or scheduled to
	// start, whichever is earlier) its clinical times may lie. Cases are
	// often created after the fact — an emergency case charted once the
	// patient is on bypass, an ECMO run cannulated in another unit — so
	// a day is allowed; a week-old event is a typing or clock error.
	// (inferred: the data dictionary asks for "some hours".)
	MaxLeadTime = 24 * time.Hour
	// MaxScheduleAhead and MaxScheduleBehind bound a case's scheduled
	// start around the moment it is created: the OR schedule is planned
	// weeks, not years, ahead, and a paper record transcribed after the
	// fact (for a registry, say) is transcribed within the year. A year
	// either way refuses the typing and clock errors (year 1, 9999, 1970)
	// without refusing real work. (inferred)
	MaxScheduleAhead  = 366 * 24 * time.Hour
	MaxScheduleBehind = 366 * 24 * time.Hour
	// MaxDeviceClockAhead is how far ahead of the server's receipt a device
	// time may be and still count as plausible. Surveyed device clocks were
	// off by 24 minutes on average, in both directions; a reading timed an
	// hour or more ahead of its own arrival comes from a clock that is
	// wrong, not slow. (inferred)
	MaxDeviceClockAhead = time.Hour
	// MaxAgeYears bounds a birth date before the case. (inferred)
	MaxAgeYears = 130
)

// TimeWindow is a closed interval of plausible times.
type TimeWindow struct {
	From, To time.Time
}

// Contains reports whether t lies in the window.
func (w TimeWindow) Contains(t time.Time) bool {
	return !t.Before(w.From) && !t.After(w.To)
}

// ContainsMs reports whether a Unix-millisecond time lies in the window.
func (w TimeWindow) ContainsMs(ms int64) bool {
	return ms >= w.From.UnixMilli() && ms <= w.To.UnixMilli()
}

// String names the window for error messages, in UTC to the second.
func (w TimeWindow) String() string {
	const f = "2006-01-02T15:04:05Z"
	return w.From.UTC().Format(f) + " to " + w.To.UTC().Format(f)
}

// Begins returns the earliest plausible clinical time of the case: a day
// before it was created or scheduled to start, whichever is earlier.
func (c *Case) Begins() time.Time {
	start := c.CreatedAt
	if !c.ScheduledStart.IsZero() && (start.IsZero() || c.ScheduledStart.Before(start)) {
		start = c.ScheduledStart
	}
	return start.Add(-MaxLeadTime)
}

// ClinicalWindow is where an operator-entered time of the case must lie
// when it is recorded at now: from Begins to now plus MaxFutureSkew.
func (c *Case) ClinicalWindow(now time.Time) TimeWindow {
	return TimeWindow{From: c.Begins(), To: now.Add(MaxFutureSkew)}
}

// DeviceWindow is where a device time of a batch received at recordedAt
// is plausible: from Begins to MaxDeviceClockAhead past its receipt. It
// depends only on the case and the batch's own receipt time, never on the
// time of a query, so whether a stored reading is plausible never changes.
func (c *Case) DeviceWindow(recordedAt time.Time) TimeWindow {
	return TimeWindow{From: c.Begins(), To: recordedAt.Add(MaxDeviceClockAhead)}
}

// checkClinicalTime adds a violation when t is outside w, naming the value
// and the window. A zero t is reported as required.
func checkClinicalTime(v *Violations, field string, t time.Time, w TimeWindow, what string) {
	switch {
	case t.IsZero():
		v.Add(field, "required")
	case !w.Contains(t):
		v.Add(field, "%s is outside %s, %s", t.UTC().Format(time.RFC3339), what, w)
	}
}

// ValidateScheduledStart checks a new case's scheduled start against the
// moment it is created.
func ValidateScheduledStart(v *Violations, field string, start, now time.Time) {
	w := TimeWindow{From: now.Add(-MaxScheduleBehind), To: now.Add(MaxScheduleAhead)}
	checkClinicalTime(v, field, start, w, "the scheduling horizon (a year either side of now)")
}

// ValidateBirthDate checks a birth date (YYYY-MM-DD, already parsed as
// born) against the case's scheduled start: not after the day of the case,
// not more than MaxAgeYears before it.
func ValidateBirthDate(v *Violations, field string, born, caseStart time.Time) {
	if caseStart.IsZero() {
		return
	}
	day := time.Date(caseStart.Year(), caseStart.Month(), caseStart.Day(), 0, 0, 0, 0, time.UTC)
	switch {
	case born.After(day):
		v.Add(field, "%s is after the case (%s)", born.Format(time.DateOnly), day.Format(time.DateOnly))
	case born.Before(day.AddDate(-MaxAgeYears, 0, 0)):
		v.Add(field, "%s is more than %d years before the case", born.Format(time.DateOnly), MaxAgeYears)
	}
}

// CheckEntryTimes checks an entry's clinical times against the case it is
// recorded on, at now: its occurred-at must lie in the case's clinical
// window, an artifact mark's span in the device window of data received by
// now. prefix names the request's entry ("entry." or "replacement."). Late
// entries inside the window are accepted (and flagged late by Stamp).
func CheckEntryTimes(c *Case, e *Entry, now time.Time, prefix string) error {
	var v Violations
	w := c.ClinicalWindow(now)
	checkClinicalTime(&v, prefix+"occurred_at", e.OccurredAt, w, "the case's time window")
	if m := e.Detail.ArtifactMark; m != nil {
		dw := c.DeviceWindow(now)
		checkClinicalTime(&v, prefix+"artifact_mark.start", m.Start, dw, "the case's device-time window")
		checkClinicalTime(&v, prefix+"artifact_mark.end", m.End, dw, "the case's device-time window")
	}
	return v.Err()
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting/csvsafe"
	"perfusion/clients/perfusion"
)

// exportWindowSamples bounds one raw query of samples export, well under the
// server's 100,000-sample raw limit so a window never fails for size.
const exportWindowSamples = 50000

// exportPlanBuckets is how finely the case is surveyed to plan the windows.
const exportPlanBuckets = 2000

func samplesExportCommand() *command {
	return &command{
		name: "export", summary: "every raw sample of a case as CSV, with a progress bar", args: "CASE_ID",
		long: `Writes one CSV row per sample — time (RFC 3339, ms), source, channel, unit,
value, invalid — for the whole case or a range, in time order per window. A
4-hour case at 40 channels is over half a million samples: the command surveys
the case first, then reads it in windows of at most 50,000 samples, drawing a
progress bar on stderr (--progress auto draws it only on a terminal).`,
		examples: []string{
			"perfusionctl samples export $CASE --out case.csv",
			"perfusionctl samples export $CASE --channels pump_flow,temp_arterial_outlet --from 2026-11-28T08:00:00Z --to 2026-11-28T09:00:00Z > first-hour.csv",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			channels := fs.String("channels", "", "comma-separated channel keys (empty: every channel)")
			from := fs.String("from", "", "start, inclusive (empty: the first sample)")
			to := fs.String("to", "", "end, exclusive (empty: after the last sample)")
			source := fs.String("source", "", "only this device source")
			out := fs.String("out", "", "write to this file instead of stdout")
			mode := fs.String("progress", "auto", "progress bar on stderr: auto (on a terminal), always, never")
			perWindow := fs.Int64("window", exportWindowSamples, "samples per read (at most 100000, the server's raw limit)")
			return func(ctx context.Context, e *env, args []string) error {
				caseID, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				if *mode != "auto" && *mode != "always" && *mode != "never" {
					return usagef("--progress: want auto, always or never, got %q", *mode)
				}
				if *perWindow < 1 || *perWindow > 100000 {
					return usagef("--window: want 1 to 100000 samples, got %d", *perWindow)
				}
				q := &pb.QuerySamplesRequest{CaseId: caseID, SourceId: *source}
				for _, ch := range strings.Split(*channels, ",") {
					if ch = strings.TrimSpace(ch); ch != "" {
						q.Channels = append(q.Channels, ch)
					}
				}
				now := time.Now()
				if q.Start, err = parseTime("from", *from, now); err != nil {
					return err
				}
				if q.End, err = parseTime("to", *to, now); err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				windows, total, err := planExport(ctx, c, q, *perWindow)
				if err != nil {
					return err
				}
				w := e.stdout
				if *out != "" {
					f, err := os.Create(*out)
					if err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				bar := newProgress(e.stderr, *mode, "samples", total)
				n, err := exportWindows(ctx, c, q, windows, w, bar)
				if err != nil {
					return err
				}
				bar.Finish()
				if *out != "" {
					fmt.Fprintf(e.stderr, "%d samples written to %s\n", n, *out)
				}
				return nil
			}
		},
	}
}

// window is a half-open time range [from, to) in ms.
type window struct{ from, to int64 }

// planExport surveys the range in buckets and groups consecutive buckets into
// windows of at most limit samples (a single bucket larger than
// that is split evenly), returning them with the total sample count.
func planExport(ctx context.Context, c *perfusion.Client, q *pb.QuerySamplesRequest, limit int64) ([]window, int64, error) {
	survey := &pb.QuerySamplesRequest{CaseId: q.CaseId, Channels: q.Channels, SourceId: q.SourceId, Start: q.Start, End: q.End, Buckets: exportPlanBuckets}
	resp, err := c.QuerySamples(ctx, survey)
	if err != nil {
		return nil, 0, err
	}
	counts := map[int64]int64{}
	var width int64
	for _, s := range resp.GetDownsampled() {
		width = s.GetBucketWidthMs()
		for _, b := range s.GetBuckets() {
			counts[b.GetStartUnixMs()] += b.GetCount() + b.GetInvalidCount()
		}
	}
	if len(counts) == 0 {
		return nil, 0, nil
	}
	starts := make([]int64, 0, len(counts))
	for t := range counts {
		starts = append(starts, t)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	return groupWindows(starts, counts, width, limit)
}

func groupWindows(starts []int64, counts map[int64]int64, width, limit int64) ([]window, int64, error) {
	var out []window
	var total, inWin int64
	cur := window{from: -1}
	flush := func() {
		if cur.from >= 0 {
			out = append(out, cur)
		}
		cur, inWin = window{from: -1}, 0
	}
	for _, t := range starts {
		n := counts[t]
		total += n
		if n > limit {
			// Split a dense bucket into equal parts; the last bucket's end
			// is its start plus the width, as the server defined it.
			flush()
			parts := (n + limit - 1) / limit
			step := max(width/parts, 1)
			for p := int64(0); p < parts; p++ {
				end := t + (p+1)*step
				if p == parts-1 {
					end = t + width
				}
				out = append(out, window{t + p*step, end})
			}
			continue
		}
		if cur.from >= 0 && (inWin+n > limit || t != cur.to) {
			flush()
		}
		if cur.from < 0 {
			cur.from = t
		}
		cur.to = t + width
		inWin += n
	}
	flush()
	return out, total, nil
}

func exportWindows(ctx context.Context, c *perfusion.Client, q *pb.QuerySamplesRequest, windows []window, w io.Writer, bar *progress) (int64, error) {
	cw := csvsafe.NewWriter(w)
	if err := cw.Write([]string{"time", "source", "channel", "unit", "value", "invalid"}); err != nil {
		return 0, err
	}
	var written int64
	for _, win := range windows {
		// Survey buckets may reach past the requested end; never export
		// outside the range asked for.
		if q.End != nil {
			win.to = min(win.to, q.End.AsTime().UnixMilli())
		}
		if q.Start != nil {
			win.from = max(win.from, q.Start.AsTime().UnixMilli())
		}
		if win.to <= win.from {
			continue
		}
		req := &pb.QuerySamplesRequest{CaseId: q.CaseId, Channels: q.Channels, SourceId: q.SourceId,
			Start: timestamppb.New(time.UnixMilli(win.from)), End: timestamppb.New(time.UnixMilli(win.to))}
		resp, err := c.QuerySamples(ctx, req)
		if err != nil {
			return written, err
		}
		n, err := writeRaw(cw, resp.GetRaw())
		written += n
		bar.Add(n)
		if err != nil {
			return written, err
		}
	}
	cw.Flush()
	return written, cw.Error()
}

// writeRaw writes one window's series merged in time order (then source and
// channel), so the file reads as a timeline.
func writeRaw(cw *csvsafe.Writer, series []*pb.RawSeries) (int64, error) {
	type row struct {
		t int64
		s *pb.RawSeries
		i int
	}
	var rows []row
	for _, s := range series {
		for i, t := range s.GetOccurredAtUnixMs() {
			rows = append(rows, row{t, s, i})
		}
	}
	sort.SliceStable(rows, func(a, b int) bool {
		ra, rb := rows[a], rows[b]
		if ra.t != rb.t {
			return ra.t < rb.t
		}
		if ra.s.GetSourceId() != rb.s.GetSourceId() {
			return ra.s.GetSourceId() < rb.s.GetSourceId()
		}
		return ra.s.GetChannel() < rb.s.GetChannel()
	})
	invalid := map[*pb.RawSeries]map[int]bool{}
	for _, s := range series {
		m := map[int]bool{}
		for _, i := range s.GetInvalidIndexes() {
			m[int(i)] = true
		}
		invalid[s] = m
	}
	for _, r := range rows {
		value, inv := "", "false"
		if invalid[r.s][r.i] {
			inv = "true"
		} else {
			value = strconv.FormatFloat(r.s.GetValues()[r.i], 'g', -1, 64)
		}
		rec := []string{time.UnixMilli(r.t).UTC().Format("2006-01-02T15:04:05.000Z07:00"), r.s.GetSourceId(), r.s.GetChannel(), r.s.GetUnit(), value, inv}
		if err := cw.Write(rec); err != nil {
			return 0, err
		}
	}
	return int64(len(rows)), nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	pb "perfusion/api/perfusion/v1"
)

func sampleCommands() []*command {
	return []*command{{
		name: "query", summary: "device trends (downsampled) or raw samples as a table", args: "CASE_ID",
		long: `One row per time, one column per channel (and source when several). With
--buckets N (default 60) each cell is the bucket mean; --buckets 0 prints raw
samples ("invalid" where the device reported an invalid reading). --stats
prints one row per bucket with count, min, mean, max and invalid count instead.
--method lttb prints at most --buckets real samples per channel, chosen by
Largest-Triangle-Three-Buckets to keep peaks and troughs (for plotting).`,
		examples: []string{
			"perfusionctl samples query $CASE --channels pump_flow,temp_arterial_outlet --from -1h --to now --buckets 12",
			"perfusionctl samples query $CASE --channels pump_flow --buckets 0 --from -5m",
			"perfusionctl samples query $CASE --channels pump_flow --stats --output json",
			"perfusionctl samples query $CASE --channels pump_flow,arterial_line_pressure --buckets 300 --method lttb",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			channels := fs.String("channels", "", "comma-separated channel keys (empty: every channel with data): "+strings.Join(channelKeys(), ", "))
			from := fs.String("from", "", "start, inclusive: RFC 3339, \"now\" or an offset like -1h; empty: the first sample")
			to := fs.String("to", "", "end, exclusive; empty: after the last sample")
			buckets := fs.Int("buckets", 60, "number of time buckets per channel; 0 for raw samples")
			source := fs.String("source", "", "only this device source")
			stats := fs.Bool("stats", false, "one row per channel and bucket with count/min/mean/max")
			method := fs.String("method", "buckets", "buckets (mean per time bucket) or lttb (at most --buckets real samples per channel, shape-preserving, for plotting)")
			return func(ctx context.Context, e *env, args []string) error {
				caseID, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				if *buckets < 0 {
					return usagef("--buckets must be 0 (raw) or more")
				}
				req := &pb.QuerySamplesRequest{CaseId: caseID, Buckets: int32(*buckets), SourceId: *source}
				switch *method {
				case "buckets":
				case "lttb":
					req.Method = pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB
				default:
					return usagef("--method must be buckets or lttb")
				}
				for _, ch := range strings.Split(*channels, ",") {
					if ch = strings.TrimSpace(ch); ch != "" {
						req.Channels = append(req.Channels, ch)
					}
				}
				now := time.Now()
				if req.Start, err = parseTime("from", *from, now); err != nil {
					return err
				}
				if req.End, err = parseTime("to", *to, now); err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := c.QuerySamples(ctx, req)
				if err != nil {
					return err
				}
				if e.json() {
					return e.emit(resp)
				}
				if *stats {
					return printStats(e, resp)
				}
				return printTrend(e, resp)
			}
		},
	}, samplesExportCommand(), sourcesCommand()}
}

// sourcesCommand lists a case's device sources with their clock lag.
func sourcesCommand() *command {
	return &command{
		name: "sources", summary: "a case's device sources: batches, resume point, clock lag behind the server", args: "CASE_ID",
		long: `One row per device source. LAG is the smallest delay seen between a batch's
newest device time and the moment the server recorded it: the device clock's
lag behind the server clock plus the quickest send (negative: the device clock
is ahead). Device times are kept as sent; a lag of minutes means the device's
times in trends and exports are off by that much.`,
		examples: []string{
			"perfusionctl samples sources $CASE",
			"perfusionctl samples sources $CASE --output json",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := c.ListSources(ctx, &pb.ListSourcesRequest{CaseId: id})
				if err != nil {
					return err
				}
				if e.json() {
					return e.emit(resp)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SOURCE	BATCHES	SAMPLES	ACKED THROUGH	FIRST SAMPLE	LAST SAMPLE	LAST RECEIVED	LAG	LAST LAG	CLOCK")
				var warn []string
				for _, src := range resp.GetSources() {
					fmt.Fprintf(tw, "%s	%d	%d	%d	%s	%s	%s	%s	%s	%s\n", src.GetSourceId(), src.GetBatches(), src.GetSamples(),
						src.GetAcknowledgedThrough(), fmtTime(src.GetFirstSampleAt()), fmtTime(src.GetLastSampleAt()),
						fmtTime(src.GetLastReceivedAt()), fmtLag(src.GetMinReceiptLagMs()), fmtLag(src.GetLastReceiptLagMs()), clockState(src))
					if src.GetClockImplausible() {
						warn = append(warn, fmt.Sprintf("warning: %s sent %d sample(s) in %d batch(es) timed far outside the case (a reset clock?): kept in the record, left out of trends, exports and metrics",
							src.GetSourceId(), src.GetImplausibleSamples(), src.GetImplausibleBatches()))
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, w := range warn {
					fmt.Fprintln(e.stdout, w)
				}
				return nil
			}
		},
	}
}

// clockState says whether a source's device clock was plausible: "ok",
// "IMPLAUSIBLE" while its latest batch is still off, "was implausible"
// when it has recovered.
func clockState(src *pb.SourceSummary) string {
	switch {
	case src.GetLastBatchImplausible():
		return "IMPLAUSIBLE"
	case src.GetClockImplausible():
		return "was implausible"
	default:
		return "ok"
	}
}

// fmtLag prints a receipt lag to the second, signed: "+10m0s" behind,
// "-2s" ahead.
func fmtLag(ms int64) string {
	d := (time.Duration(ms) * time.Millisecond).Round(time.Second)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

type column struct {
	head  string
	cells map[int64]string
}

func seriesHead(channel, source, unit string, multiSource bool) string {
	h := channel
	if multiSource {
		h += "@" + source
	}
	if unit != "" {
		h += " (" + unit + ")"
	}
	return h
}

func printTrend(e *env, resp *pb.QuerySamplesResponse) error {
	sources := map[string]bool{}
	for _, s := range resp.GetRaw() {
		sources[s.GetSourceId()] = true
	}
	for _, s := range resp.GetDownsampled() {
		sources[s.GetSourceId()] = true
	}
	multi := len(sources) > 1
	var cols []column
	times := map[int64]bool{}
	for _, s := range resp.GetDownsampled() {
		col := column{head: seriesHead(s.GetChannel(), s.GetSourceId(), s.GetUnit(), multi), cells: map[int64]string{}}
		for _, b := range s.GetBuckets() {
			// A bucket holding only device-invalid readings has no mean:
			// printing its zero would chart a value the device never gave.
			cell := "invalid"
			if b.GetCount() > 0 {
				cell = fmtNum(b.GetMean())
			}
			col.cells[b.GetStartUnixMs()] = cell
			times[b.GetStartUnixMs()] = true
		}
		cols = append(cols, col)
	}
	for _, s := range resp.GetRaw() {
		col := column{head: seriesHead(s.GetChannel(), s.GetSourceId(), s.GetUnit(), multi), cells: map[int64]string{}}
		invalid := map[int]bool{}
		for _, i := range s.GetInvalidIndexes() {
			invalid[int(i)] = true
		}
		for i, t := range s.GetOccurredAtUnixMs() {
			v := "invalid"
			if !invalid[i] && i < len(s.GetValues()) {
				v = fmtNum(s.GetValues()[i])
			}
			col.cells[t] = v
			times[t] = true
		}
		cols = append(cols, col)
	}
	if len(cols) == 0 {
		fmt.Fprintln(e.stdout, "No samples in the range.")
		return nil
	}
	var ts []int64
	for t := range times {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := []string{"TIME"}
	for _, c := range cols {
		head = append(head, c.head)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, t := range ts {
		row := []string{time.UnixMilli(t).UTC().Format("2006-01-02 15:04:05.000Z")}
		for _, c := range cols {
			v, ok := c.cells[t]
			if !ok {
				v = "-"
			}
			row = append(row, v)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	return tw.Flush()
}

func printStats(e *env, resp *pb.QuerySamplesResponse) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSOURCE\tUNIT\tBUCKET START\tWIDTH\tCOUNT\tMIN\tMEAN\tMAX\tINVALID")
	for _, s := range resp.GetDownsampled() {
		for _, b := range s.GetBuckets() {
			// A bucket of only invalid readings has no min, mean or max.
			lo, mean, hi := "-", "-", "-"
			if b.GetCount() > 0 {
				lo, mean, hi = fmtNum(b.GetMin()), fmtNum(b.GetMean()), fmtNum(b.GetMax())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", s.GetChannel(), s.GetSourceId(), s.GetUnit(),
				time.UnixMilli(b.GetStartUnixMs()).UTC().Format("2006-01-02 15:04:05Z"), time.Duration(s.GetBucketWidthMs())*time.Millisecond,
				b.GetCount(), lo, mean, hi, b.GetInvalidCount())
		}
	}
	if len(resp.GetRaw()) > 0 {
		fmt.Fprintln(e.stderr, "--stats needs --buckets > 0; printing nothing for raw series")
	}
	return tw.Flush()
}

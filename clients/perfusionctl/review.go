package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting/csvsafe"
)

// defaultReviewColumns are the metrics a reviewer sees first in a case
// table: times, nadirs and oxygen delivery.
var defaultReviewColumns = []string{"cpb_minutes", "cross_clamp_minutes", "nadir_temp_c", "nadir_hct_pct",
	"nadir_do2i", "minutes_do2i_below", "minutes_map_below_50", "transfusion_units"}

func reviewCommands() []*command {
	return []*command{reviewCasesCommand(), reviewAggregateCommand(), reviewMetricsCommand(), reviewExportCommand()}
}

// comparisonOps maps the operators of --where to the API's comparisons,
// longest first so "<=" is not read as "<".
var comparisonOps = []struct {
	op  string
	cmp pb.Comparison
}{
	{"<=", pb.Comparison_COMPARISON_LESS_OR_EQUAL}, {">=", pb.Comparison_COMPARISON_GREATER_OR_EQUAL},
	{"<>", pb.Comparison_COMPARISON_NOT_EQUAL}, {"!=", pb.Comparison_COMPARISON_NOT_EQUAL},
	{"<", pb.Comparison_COMPARISON_LESS}, {">", pb.Comparison_COMPARISON_GREATER}, {"=", pb.Comparison_COMPARISON_EQUAL},
}

// parseCondition reads a --where condition such as "nadir_hct_pct<21".
func parseCondition(s string) (*pb.MetricFilter, error) {
	i := strings.IndexAny(s, "<>=!")
	if i <= 0 {
		return nil, usagef("--where %q: want METRIC<OP>VALUE, e.g. nadir_hct_pct<21 (operators < <= > >= = <>)", s)
	}
	name, rest := strings.TrimSpace(s[:i]), s[i:]
	for _, o := range comparisonOps {
		if v, ok := strings.CutPrefix(rest, o.op); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return nil, usagef("--where %q: %q is not a number", s, strings.TrimSpace(v))
			}
			return &pb.MetricFilter{Metric: name, Comparison: o.cmp, Value: x}, nil
		}
	}
	return nil, usagef("--where %q: unknown operator (use < <= > >= = <>)", s)
}

// cohortFlags defines the filter flags shared by the review commands.
func cohortFlags(fs *flag.FlagSet) func() (*pb.CohortFilter, error) {
	from := fs.String("from", "", "scheduled at or after: RFC 3339, \"now\" or an offset like -720h")
	to := fs.String("to", "", "scheduled before")
	site := fs.String("site", "", "only this site")
	room := fs.String("room", "", "only this room")
	surgeon := fs.String("surgeon", "", "only this surgeon (staff id)")
	perf := fs.String("perfusionist", "", "only this primary perfusionist (staff id)")
	kind := fs.String("kind", "", "cpb or ecmo")
	status := fs.String("status", "", "closed or signed")
	var where listFlag
	fs.Var(&where, "where", "metric condition METRIC<OP>VALUE, e.g. 'nadir_hct_pct<21'; repeat for AND")
	return func() (*pb.CohortFilter, error) {
		f := &pb.CohortFilter{Site: *site, Room: *room, Surgeon: *surgeon, Perfusionist: *perf}
		now := time.Now()
		var err error
		if f.ScheduledFrom, err = parseTime("from", *from, now); err != nil {
			return nil, err
		}
		if f.ScheduledTo, err = parseTime("to", *to, now); err != nil {
			return nil, err
		}
		if *kind != "" {
			k, err := parseEnum(pb.CaseKind(0).Descriptor(), "kind", *kind)
			if err != nil {
				return nil, err
			}
			f.Kind = pb.CaseKind(k)
		}
		if *status != "" {
			st, err := parseEnum(pb.CaseStatus(0).Descriptor(), "status", *status)
			if err != nil {
				return nil, err
			}
			f.Status = pb.CaseStatus(st)
		}
		for _, w := range where {
			c, err := parseCondition(w)
			if err != nil {
				return nil, err
			}
			f.MetricFilters = append(f.MetricFilters, c)
		}
		return f, nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func reviewCasesCommand() *command {
	return &command{
		name: "cases", summary: "list closed and signed cases with their quality metrics",
		long: `Filters combine with AND. Metric names are those of 'perfusionctl review metrics';
--output csv writes every selected metric as a column.`,
		examples: []string{
			"perfusionctl review cases --from 2026-01-01T00:00:00Z --where 'nadir_hct_pct<21' --where 'minutes_do2i_below>10'",
			"perfusionctl review cases --surgeon S1 --sort cpb_minutes --desc --all --output csv > cases.csv",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			filter := cohortFlags(fs)
			sortBy := fs.String("sort", "", "sort by this metric (default: scheduled start)")
			desc := fs.Bool("desc", false, "sort descending")
			metrics := fs.String("metrics", "", "comma-separated metric columns (default: "+strings.Join(defaultReviewColumns, ",")+")")
			size := fs.Int("page-size", 50, "cases per page (at most 500)")
			token := fs.String("page-token", "", "page token printed by a previous call")
			all := fs.Bool("all", false, "follow page tokens and print every matching case")
			return func(ctx context.Context, e *env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				f, err := filter()
				if err != nil {
					return err
				}
				cols := splitList(*metrics)
				if len(cols) == 0 {
					cols = defaultReviewColumns
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				rc := pb.NewReviewServiceClient(c.Conn())
				req := &pb.QueryCasesRequest{Filter: f, SortBy: *sortBy, Descending: *desc, PageSize: int32(*size), PageToken: *token, Metrics: splitList(*metrics)}
				resp := &pb.QueryCasesResponse{}
				for {
					page, err := rc.QueryCases(ctx, req)
					if err != nil {
						return err
					}
					resp.Cases, resp.NextPageToken = append(resp.Cases, page.GetCases()...), page.GetNextPageToken()
					if !*all || page.GetNextPageToken() == "" {
						break
					}
					req.PageToken = page.GetNextPageToken()
				}
				return printReviewCases(e, resp, cols)
			}
		},
	}
}

func metricCell(m map[string]float64, name string) string {
	if v, ok := m[name]; ok {
		return fmtNum(v)
	}
	return "-"
}

func printReviewCases(e *env, resp *pb.QueryCasesResponse, cols []string) error {
	switch e.g.output {
	case "json":
		return e.emit(resp)
	case "csv":
		w := csvsafe.NewWriter(e.stdout)
		w.Write(append([]string{"case_id", "scheduled_start", "status", "kind", "site", "room", "surgeon", "perfusionist"}, cols...))
		for _, c := range resp.GetCases() {
			row := []string{c.GetCaseId(), fmtTime(c.GetScheduledStart()), enumText(c.GetStatus()), enumText(c.GetKind()),
				c.GetSite(), c.GetRoom(), c.GetSurgeon(), c.GetPerfusionist()}
			for _, m := range cols {
				v, ok := c.GetMetrics()[m]
				row = append(row, map[bool]string{true: strconv.FormatFloat(v, 'g', -1, 64), false: ""}[ok])
			}
			w.Write(row)
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := append([]string{"CASE", "SCHEDULED", "STATUS", "SITE", "ROOM", "SURGEON", "PERF"}, upper(cols)...)
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, c := range resp.GetCases() {
		row := []string{short(c.GetCaseId()), fmtTime(c.GetScheduledStart())[:10], enumText(c.GetStatus()), c.GetSite(), c.GetRoom(),
			c.GetSurgeon(), c.GetPerfusionist()}
		for _, m := range cols {
			row = append(row, metricCell(c.GetMetrics(), m))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n%d cases", len(resp.GetCases()))
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(e.stdout, "; more: --page-token %s (or --all)", t)
	}
	fmt.Fprintln(e.stdout)
	return nil
}

func upper(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strings.ToUpper(x)
	}
	return out
}

func reviewAggregateCommand() *command {
	return &command{
		name: "aggregate", summary: "count, mean, median, quartiles, min and max of metrics, by group",
		examples: []string{
			"perfusionctl review aggregate --group-by month --metrics cpb_minutes,nadir_hct_pct,minutes_do2i_below",
			"perfusionctl review aggregate --group-by surgeon --metrics cpb_minus_clamp_minutes --from -8760h --output csv",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			filter := cohortFlags(fs)
			group := fs.String("group-by", "", "surgeon, perfusionist, month or site (default: one group)")
			metrics := fs.String("metrics", "cpb_minutes,cross_clamp_minutes,nadir_hct_pct,nadir_do2i,minutes_do2i_below", "comma-separated metrics")
			return func(ctx context.Context, e *env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				f, err := filter()
				if err != nil {
					return err
				}
				req := &pb.AggregateMetricsRequest{Filter: f, Metrics: splitList(*metrics)}
				if *group != "" {
					g, err := parseEnum(pb.GroupBy(0).Descriptor(), "group-by", *group)
					if err != nil {
						return err
					}
					req.GroupBy = pb.GroupBy(g)
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := pb.NewReviewServiceClient(c.Conn()).AggregateMetrics(ctx, req)
				if err != nil {
					return err
				}
				return printAggregate(e, resp)
			}
		},
	}
}

func printAggregate(e *env, resp *pb.AggregateMetricsResponse) error {
	head := []string{"group", "metric", "n", "mean", "median", "p25", "p75", "min", "max"}
	rows := [][]string{}
	for _, s := range resp.GetStatistics() {
		rows = append(rows, []string{s.GetGroup(), s.GetMetric(), strconv.FormatInt(s.GetCount(), 10), fmtNum(s.GetMean()),
			fmtNum(s.GetMedian()), fmtNum(s.GetP25()), fmtNum(s.GetP75()), fmtNum(s.GetMin()), fmtNum(s.GetMax())})
	}
	switch e.g.output {
	case "json":
		return e.emit(resp)
	case "csv":
		w := csvsafe.NewWriter(e.stdout)
		w.Write(head)
		w.WriteAll(rows)
		return w.Error()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(upper(head), "\t")+"\t")
	for _, r := range rows {
		if r[0] == "" {
			r[0] = "(all)"
		}
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	return tw.Flush()
}

func reviewMetricsCommand() *command {
	return &command{
		name: "metrics", summary: "show one case's metrics with their definitions and thresholds", args: "<case>",
		examples: []string{"perfusionctl review metrics $CASE", "perfusionctl review metrics $CASE --output json | jq .case.metrics"},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			caseFlag := fs.String("case", "", "case id (or give it as the argument)")
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*caseFlag, args)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := pb.NewReviewServiceClient(c.Conn()).GetCaseMetrics(ctx, &pb.GetCaseMetricsRequest{CaseId: id})
				if err != nil {
					return err
				}
				if e.g.output == "json" {
					return e.emit(resp)
				}
				return printCaseMetrics(e.stdout, resp, e.g.output == "csv")
			}
		},
	}
}

func printCaseMetrics(w io.Writer, resp *pb.GetCaseMetricsResponse, asCSV bool) error {
	m := resp.GetCase().GetMetrics()
	if asCSV {
		cw := csvsafe.NewWriter(w)
		cw.Write([]string{"metric", "value", "unit", "description", "window"})
		for _, d := range resp.GetDefinitions() {
			if v, ok := m[d.GetName()]; ok {
				cw.Write([]string{d.GetName(), strconv.FormatFloat(v, 'g', -1, 64), d.GetUnit(), d.GetDescription(), d.GetWindow()})
			}
		}
		cw.Flush()
		return cw.Error()
	}
	c, th := resp.GetCase(), resp.GetThresholds()
	fmt.Fprintf(w, "Case %s  %s  %s %s  scheduled %s\n", c.GetCaseId(), enumText(c.GetStatus()), c.GetSite(), c.GetRoom(), fmtTime(c.GetScheduledStart()))
	pop := "the site's"
	if resp.GetPopulation() != "" {
		pop = "population " + resp.GetPopulation() + "'s"
	}
	fmt.Fprintf(w, "Definitions v%d, computed %s at ledger sequence %d; BSA formula %s; %s thresholds: DO2i %s, MAP %v\n\n",
		resp.GetDefinitionsVersion(), fmtTime(resp.GetComputedAt()), resp.GetCoversSequence(), resp.GetBsaFormula(),
		pop, fmtNum(th.GetDo2IThreshold()), th.GetMapThresholds())
	printBypassRuns(w, resp)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tUNIT\tWINDOW\tDEFINITION")
	for _, d := range resp.GetDefinitions() {
		v := metricCell(m, d.GetName())
		if d.GetName() == "nadir_temp_c" && resp.GetNadirTempSite() != "" && v != "-" {
			v += " (" + strings.TrimPrefix(resp.GetNadirTempSite(), "temp_") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.GetName(), v, d.GetUnit(), d.GetWindow(), d.GetDescription())
	}
	return tw.Flush()
}

// printBypassRuns says, per bypass run, which full-flow window the
// "full_flow" metrics were measured over and how its ends were found, so
// a reviewer can tell a charted window from one the site's rule inferred.
func printBypassRuns(w io.Writer, resp *pb.GetCaseMetricsResponse) {
	th := resp.GetThresholds()
	fmt.Fprintf(w, "Full-flow window (metrics marked full_flow): charted full_flow → weaning_start, else flow held at %s%% of the run's level for %s min, else %s min after bypass on to %s min before off\n",
		fmtNum(th.GetFullFlowPct()), fmtNum(th.GetFullFlowSustainMinutes()), fmtNum(th.GetFullFlowAfterOnMinutes()), fmtNum(th.GetWeaningBeforeOffMinutes()))
	src := func(s pb.FullFlowSource) string {
		if s == pb.FullFlowSource_FULL_FLOW_SOURCE_UNSPECIFIED {
			return "none"
		}
		return enumText(s)
	}
	for i, r := range resp.GetBypassRuns() {
		run := "bypass"
		if !r.GetCharted() {
			run = "device data (no bypass charted)"
		}
		if r.GetFullFlowFrom() == nil {
			fmt.Fprintf(w, "  run %d: %s %s → %s; no full-flow window found\n", i+1, run, fmtTime(r.GetOn()), fmtTime(r.GetOff()))
			continue
		}
		fmt.Fprintf(w, "  run %d: %s %s → %s; full flow %s (%s) → %s (%s), %s min\n", i+1, run, fmtTime(r.GetOn()), fmtTime(r.GetOff()),
			fmtTime(r.GetFullFlowFrom()), src(r.GetFromSource()), fmtTime(r.GetFullFlowTo()), src(r.GetToSource()), fmtNum(r.GetFullFlowMinutes()))
	}
	fmt.Fprintln(w)
}

func reviewExportCommand() *command {
	return &command{
		name: "export", summary: "write a de-identified extract (CSV or NDJSON) to stdout",
		long: `HIPAA Safe Harbor: no names, MRNs, exact dates (year only), device serials or free
text; ages over 89 are "90+"; event times are minutes from bypass start; each case
is a pseudonym that stays the same across extracts made with the server's key.`,
		examples: []string{
			"perfusionctl review export --format csv --from 2026-01-01T00:00:00Z > cohort.csv",
			"perfusionctl review export --format ndjson --where 'nadir_hct_pct<21' > low-hct.ndjson",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			filter := cohortFlags(fs)
			format := fs.String("format", "csv", "csv or ndjson")
			metrics := fs.String("metrics", "", "comma-separated metrics to include (default: all)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				f, err := filter()
				if err != nil {
					return err
				}
				fm, err := parseEnum(pb.ExportFormat(0).Descriptor(), "format", *format)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				stream, err := pb.NewReviewServiceClient(c.Conn()).ExportCohort(ctx,
					&pb.ExportCohortRequest{Filter: f, Format: pb.ExportFormat(fm), Metrics: splitList(*metrics)})
				if err != nil {
					return err
				}
				n := 0
				for {
					chunk, err := stream.Recv()
					if err == io.EOF {
						fmt.Fprintf(e.stderr, "exported %d cases\n", n)
						return nil
					}
					if err != nil {
						return err
					}
					if _, err := e.stdout.Write(chunk.GetData()); err != nil {
						return err
					}
					n += int(chunk.GetCases())
				}
			}
		},
	}
}

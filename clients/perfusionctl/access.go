package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	pb "perfusion/api/perfusion/v1"
)

// auditSorts are the --sort values of `audit access`.
var auditSorts = map[string]pb.AccessEventSort{
	"time":        pb.AccessEventSort_ACCESS_EVENT_SORT_TIME,
	"user":        pb.AccessEventSort_ACCESS_EVENT_SORT_PRINCIPAL,
	"method":      pb.AccessEventSort_ACCESS_EVENT_SORT_METHOD,
	"case":        pb.AccessEventSort_ACCESS_EVENT_SORT_CASE,
	"site":        pb.AccessEventSort_ACCESS_EVENT_SORT_SITE,
	"outcome":     pb.AccessEventSort_ACCESS_EVENT_SORT_OUTCOME,
	"break-glass": pb.AccessEventSort_ACCESS_EVENT_SORT_BREAK_GLASS,
}

// auditCommands is `audit access`, the access audit report, and `audit
// verify`, the check of its hash chains; the break-glass commands open,
// end and list emergency access.
func auditCommands() []*command {
	return []*command{{
		name: "access", summary: "who accessed which case: every patient-data call, audit read and refusal; sort and filter by any column",
		examples: []string{
			"perfusionctl audit access --from -24h",
			"perfusionctl audit access --case $CASE",
			"perfusionctl audit access --user er-doc --denied",
			"perfusionctl audit access --site NORTH --break-glass --sort user",
			"perfusionctl audit access --method /perfusion.v1.ReviewService/ExportCohort --sort time --asc",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			from := fs.String("from", "", "events at or after this time (RFC 3339, \"now\", or an offset like -24h)")
			to := fs.String("to", "", "events before this time")
			user := fs.String("user", "", "only this principal's events")
			cs := fs.String("case", "", "only events naming this case")
			denied := fs.Bool("denied", false, "only refused calls")
			method := fs.String("method", "", "only this RPC (full name) or action (break-glass-expired)")
			site := fs.String("site", "", `only this site's events ("-": events that reach no site)`)
			outcome := fs.String("outcome", "", "only this outcome (OK, NotFound, PermissionDenied, …)")
			bg := fs.Bool("break-glass", false, "only break-glass events")
			sortBy := fs.String("sort", "time", "sort by time, user, method, case, site, outcome or break-glass")
			asc := fs.Bool("asc", false, "ascending (default: newest first for time, ascending otherwise)")
			desc := fs.Bool("desc", false, "descending")
			limit := fs.Int("limit", 100, "at most this many events (pages are fetched as needed)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				sort, ok := auditSorts[*sortBy]
				if !ok {
					return usagef("--sort: one of time, user, method, case, site, outcome, break-glass")
				}
				if *asc && *desc {
					return usagef("--asc and --desc together")
				}
				now := time.Now()
				req := &pb.ListAccessEventsRequest{Principal: *user, CaseId: *cs, DeniedOnly: *denied, Method: *method, Site: *site,
					Outcome: *outcome, BreakGlassOnly: *bg, SortBy: sort}
				switch {
				case *asc:
					req.Order = pb.SortOrder_SORT_ORDER_ASCENDING
				case *desc:
					req.Order = pb.SortOrder_SORT_ORDER_DESCENDING
				}
				var err error
				if req.From, err = parseTime("from", *from, now); err != nil {
					return err
				}
				if req.To, err = parseTime("to", *to, now); err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				ac := pb.NewAccessServiceClient(c.Conn())
				var events []*pb.AccessEvent
				for len(events) < *limit {
					req.PageSize = int32(min(*limit-len(events), 1000))
					resp, err := ac.ListAccessEvents(ctx, req)
					if err != nil {
						return err
					}
					events = append(events, resp.GetEvents()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						break
					}
				}
				if e.json() {
					return e.emit(&pb.ListAccessEventsResponse{Events: events})
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tUSER\tROLES\tMETHOD\tCASE\tSITE\tCODE\tFROM\tREASON")
				for _, ev := range events {
					cs := dash(ev.GetCaseId())
					if ev.GetCaseCount() > 0 {
						cs = fmt.Sprintf("%d cases", ev.GetCaseCount())
					}
					reason := ev.GetReason()
					if ev.GetBreakGlass() && !strings.Contains(reason, "break-glass") {
						reason = strings.TrimSpace("break-glass " + reason)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.GetAt().AsTime().Local().Format("2006-01-02 15:04:05"), dash(ev.GetPrincipal()),
						dash(ev.GetRoles()), ev.GetMethod(), cs, dash(ev.GetSite()), ev.GetCode(), dash(ev.GetClientAddr()), reason)
				}
				return tw.Flush()
			}
		},
	}, {
		name: "verify", summary: "re-hash the access audit's chains (one per site); exit 5 naming the first bad link",
		examples: []string{
			"perfusionctl audit verify",
			"perfusionctl audit verify --site MAIN --output json",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			site := fs.String("site", "", `only this site's chain ("-": events that reach no site)`)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := pb.NewAccessServiceClient(c.Conn()).VerifyAccessAudit(ctx, &pb.VerifyAccessAuditRequest{Site: *site})
				if err != nil {
					return err
				}
				if e.json() {
					if err := e.emit(resp); err != nil {
						return err
					}
				} else {
					// The heads are worth keeping elsewhere: a tail cut off
					// with its head set back shows only against them.
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SITE\tLINKS\tHEAD\tHEAD HASH\tSTATUS")
					for _, ch := range resp.GetChains() {
						st := "OK"
						if !ch.GetOk() {
							st = fmt.Sprintf("FAILED at link %d", ch.GetBadSeq())
						}
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", dash(ch.GetSite()), ch.GetLinks(), ch.GetHeadSeq(), ch.GetHeadHash(), st)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					if n := resp.GetUnchainedEvents(); n > 0 {
						fmt.Fprintf(e.stdout, "%d events from before the chain existed are not covered\n", n)
					}
				}
				if resp.GetOk() {
					return nil
				}
				for _, ch := range resp.GetChains() {
					if ch.GetOk() {
						continue
					}
					ev := ch.GetBadEventId()
					if ev == "" {
						ev = "missing"
					}
					return exitCodeError{code: exitVerifyFail, msg: fmt.Sprintf("access audit verification FAILED: site %s, link %d (event %s): %s",
						dash(ch.GetSite()), ch.GetBadSeq(), ev, ch.GetProblem())}
				}
				return exitCodeError{code: exitVerifyFail, msg: "access audit verification FAILED"}
			}
		},
	}}
}

func breakGlassCommands() []*command {
	return []*command{
		{
			name: "open", summary: "emergency access to a case of another site, for a limited time, with a reason", args: "CASE_ID",
			examples: []string{`perfusionctl break-glass open $CASE --reason "patient transferred on ECMO, arrested in ED"`},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				reason := fs.String("reason", "", "the emergency (required, 10 to 500 characters; no patient identifiers)")
				return func(ctx context.Context, e *env, args []string) error {
					id, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := pb.NewAccessServiceClient(c.Conn()).OpenBreakGlass(ctx, &pb.OpenBreakGlassRequest{CaseId: id, Reason: *reason})
					if err != nil {
						return err
					}
					return printGrants(e, []*pb.BreakGlassGrant{resp.GetGrant()})
				}
			},
		},
		{
			name: "end", summary: "end your emergency access before it expires", args: "GRANT_ID",
			examples: []string{"perfusionctl break-glass end $GRANT"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				return func(ctx context.Context, e *env, args []string) error {
					if len(args) != 1 {
						return usagef("give the grant id")
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := pb.NewAccessServiceClient(c.Conn()).EndBreakGlass(ctx, &pb.EndBreakGlassRequest{GrantId: args[0]})
					if err != nil {
						return err
					}
					return printGrants(e, []*pb.BreakGlassGrant{resp.GetGrant()})
				}
			},
		},
		{
			name: "list", summary: "break-glass grants for review, newest first",
			examples: []string{"perfusionctl break-glass list --from -7d", "perfusionctl break-glass list --user er-doc"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				from := fs.String("from", "", "grants started at or after this time")
				to := fs.String("to", "", "grants started before this time")
				user := fs.String("user", "", "only this principal's grants")
				cs := fs.String("case", "", "only grants on this case")
				limit := fs.Int("limit", 100, "at most this many grants (at most 1000)")
				return func(ctx context.Context, e *env, args []string) error {
					if len(args) > 0 {
						return usagef("unexpected argument %q", args[0])
					}
					now := time.Now()
					req := &pb.ListBreakGlassRequest{Principal: *user, CaseId: *cs, PageSize: int32(*limit)}
					var err error
					if req.From, err = parseTime("from", *from, now); err != nil {
						return err
					}
					if req.To, err = parseTime("to", *to, now); err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := pb.NewAccessServiceClient(c.Conn()).ListBreakGlass(ctx, req)
					if err != nil {
						return err
					}
					return printGrants(e, resp.GetGrants())
				}
			},
		},
	}
}

func printGrants(e *env, gs []*pb.BreakGlassGrant) error {
	if e.json() {
		return e.emit(&pb.ListBreakGlassResponse{Grants: gs})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tUSER\tCASE\tSITE\tSTARTED\tEXPIRES\tENDED\tREASON")
	for _, g := range gs {
		ended := "running"
		if g.GetEndedAt() != nil {
			ended = g.GetEndReason() + " " + g.GetEndedAt().AsTime().Local().Format("15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.GetGrantId(), g.GetPrincipal(), g.GetCaseId(), g.GetSite(),
			g.GetStartedAt().AsTime().Local().Format("2006-01-02 15:04:05"), g.GetExpiresAt().AsTime().Local().Format("15:04:05"), ended, g.GetReason())
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

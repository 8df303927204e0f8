package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	pb "perfusion/api/perfusion/v1"
)

// auditCommands is `audit access`, the access audit report; the
// break-glass commands open, end and list emergency access.
func auditCommands() []*command {
	return []*command{{
		name: "access", summary: "who accessed which case: every patient-data call and every refusal, newest first",
		examples: []string{
			"perfusionctl audit access --from -24h",
			"perfusionctl audit access --case $CASE",
			"perfusionctl audit access --user er-doc --denied",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			from := fs.String("from", "", "events at or after this time (RFC 3339, \"now\", or an offset like -24h)")
			to := fs.String("to", "", "events before this time")
			user := fs.String("user", "", "only this principal's events")
			cs := fs.String("case", "", "only events naming this case")
			denied := fs.Bool("denied", false, "only refused calls")
			limit := fs.Int("limit", 100, "at most this many events (pages are fetched as needed)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				now := time.Now()
				req := &pb.ListAccessEventsRequest{Principal: *user, CaseId: *cs, DeniedOnly: *denied}
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
				fmt.Fprintln(tw, "TIME\tUSER\tROLES\tMETHOD\tCASE\tCODE\tFROM\tREASON")
				for _, ev := range events {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.GetAt().AsTime().Local().Format("2006-01-02 15:04:05"), dash(ev.GetPrincipal()),
						dash(ev.GetRoles()), ev.GetMethod(), dash(ev.GetCaseId()), ev.GetCode(), dash(ev.GetClientAddr()), ev.GetReason())
				}
				return tw.Flush()
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

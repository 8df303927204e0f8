package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

var rootExamples = []string{
	"export PERFUSION_TOKEN=$(perfusiond token --subject perfusionist-1 --roles perfusionist --sites MAIN)",
	"perfusionctl case create --kind cpb --site MAIN --room OR-3 --start 2026-11-28T08:00:00Z --height 170 --weight 70",
	"perfusionctl entry add event --case $CASE --type bypass-on",
	"perfusionctl record verify $CASE || echo \"record of $CASE does not verify\"",
}

func commandTree() *command {
	return &command{
		summary: "command-line client of the perfusion record service",
		long: `Cases, entries, sign-off, record verification and device trends, over the
perfusiond gRPC API. You are identified by a bearer token (--token-file or
PERFUSION_TOKEN) and, for services, a client certificate (--cert, --key);
--principal is for test builds of perfusiond (-tags devauth) run with --dev-header-auth.`,
		subs: []*command{
			{name: "case", summary: "create, list, show, update, close, sign cases; add addenda", subs: append(caseCommands(), identityCommands()...)},
			{name: "entry", summary: "chart, list, correct and void entries", subs: entryCommands()},
			{name: "record", summary: "verify a case's hash chain; show its audit trail", subs: recordCommands()},
			{name: "samples", summary: "query device data", subs: sampleCommands()},
			{name: "review", summary: "quality metrics across cases: query, aggregate, de-identified export", subs: reviewCommands()},
			{name: "export", summary: "preview the HL7 v2 or FHIR message a signed case version is sent as", subs: exportCommands()},
			{name: "delivery", summary: "list deliveries to the hospital; retry a failed one", subs: deliveryCommands()},
			{name: "inbound", summary: "what the EHR sent over HL7 (ADT, SIU) and what it changed; replay (admins)", subs: inboundCommands()},
			{name: "audit", summary: "access audit reports (admins)", subs: auditCommands()},
			{name: "break-glass", summary: "emergency access to another site's case; review of its use", subs: breakGlassCommands()},
			completionCommand(),
		},
	}
}

func caseCommands() []*command {
	return []*command{
		{
			name: "create", summary: "open a new case (planned)",
			long: "Prints the new case. --id makes the call idempotent (a UUID you choose).",
			examples: []string{
				"perfusionctl case create --kind cpb --site MAIN --room OR-3 --start 2026-11-28T08:00:00Z",
				"perfusionctl case create --kind ecmo --site MAIN --room ICU-4 --start now --mrn 123456 --family Doe --given Jane --height 165 --weight 58 --procedure 'VA ECMO'",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				id := fs.String("id", "", "case UUID of your choosing (idempotent create); empty: the server assigns one")
				kind := fs.String("kind", "", "cpb or ecmo (required)")
				site := fs.String("site", "", "site code (required)")
				room := fs.String("room", "", "room, e.g. OR-3 (required)")
				start := fs.String("start", "", "scheduled start: RFC 3339, \"now\" or an offset like 30m (required)")
				details := detailFlags(fs)
				return func(ctx context.Context, e *env, args []string) error {
					if err := noArgs(args); err != nil {
						return err
					}
					req := &pb.CreateCaseRequest{CaseId: *id, Site: *site, Room: *room}
					if *kind == "" {
						return usagef("--kind is required (cpb or ecmo)")
					}
					k, err := parseEnum(pb.CaseKind(0).Descriptor(), "kind", *kind)
					if err != nil {
						return err
					}
					req.Kind = pb.CaseKind(k)
					if req.ScheduledStart, err = parseTime("start", *start, time.Now()); err != nil {
						return err
					}
					d := &pb.CaseDetails{}
					if err := details(d, flagSet(fs)); err != nil {
						return err
					}
					req.Details = d
					return call(ctx, e, func(c *perfusion.Client) (*pb.CreateCaseResponse, error) {
						return c.CreateCase(ctx, req)
					}, func(resp *pb.CreateCaseResponse) error {
						return printCase(e, resp.GetCase())
					})
				}
			},
		},
		{
			name: "list", summary: "list cases, newest scheduled start first",
			examples: []string{
				"perfusionctl case list",
				"perfusionctl case list --status closed --site MAIN --from -24h",
				"perfusionctl case list --output json | jq -r '.cases[].caseId'",
				"perfusionctl case list --all --status signed --from 2026-01-01T00:00:00Z",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				st := fs.String("status", "", "only this status: "+strings.Join(enumNames(pb.CaseStatus(0).Descriptor()), ", "))
				room := fs.String("room", "", "only this room")
				site := fs.String("site", "", "only this site")
				from := fs.String("from", "", "only cases scheduled at or after this time")
				to := fs.String("to", "", "only cases scheduled before this time")
				size := fs.Int("page-size", 50, "cases per page (at most 500)")
				token := fs.String("page-token", "", "page token printed by a previous list")
				all := fs.Bool("all", false, "follow page tokens and print every matching case")
				return func(ctx context.Context, e *env, args []string) error {
					if err := noArgs(args); err != nil {
						return err
					}
					req := &pb.ListCasesRequest{Room: *room, Site: *site, PageSize: int32(*size), PageToken: *token}
					var err error
					if *st != "" {
						n, err := parseEnum(pb.CaseStatus(0).Descriptor(), "status", *st)
						if err != nil {
							return err
						}
						req.Status = pb.CaseStatus(n)
					}
					now := time.Now()
					if req.ScheduledFrom, err = parseTime("from", *from, now); err != nil {
						return err
					}
					if req.ScheduledTo, err = parseTime("to", *to, now); err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := listCases(ctx, c, req, *all)
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "CASE\tSTATUS\tKIND\tSITE\tROOM\tSCHEDULED\tPROCEDURE\tLINKS")
					for _, cs := range resp.GetCases() {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", cs.GetCaseId(), enumText(cs.GetStatus()), enumText(cs.GetKind()),
							cs.GetSite(), cs.GetRoom(), fmtTime(cs.GetScheduledStart()), cs.GetDetails().GetProcedure().GetDescription(), cs.GetLedgerHead().GetSequence())
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					if t := resp.GetNextPageToken(); t != "" {
						fmt.Fprintf(e.stdout, "\nMore: perfusionctl case list --page-token %s\n", t)
					}
					return nil
				}
			},
		},
		updateCommand(),
		watchCommand(),
		caseLeaf("show", "show one case", "perfusionctl case show $CASE",
			func(ctx context.Context, e *env, id string) error {
				return call(ctx, e, func(c *perfusion.Client) (*pb.GetCaseResponse, error) {
					return c.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
				}, func(resp *pb.GetCaseResponse) error {
					return printCase(e, resp.GetCase())
				})
			}),
		caseLeaf("close", "end charting on a case (then only sign-off and addenda)", "perfusionctl case close $CASE",
			func(ctx context.Context, e *env, id string) error {
				return call(ctx, e, func(c *perfusion.Client) (*pb.CloseCaseResponse, error) {
					return c.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: id})
				}, func(resp *pb.CloseCaseResponse) error {
					return printCase(e, resp.GetCase())
				})
			}),
		{
			name: "sign", summary: "sign a closed case, binding you to its ledger head", args: "CASE_ID",
			long: `With --head (the ledger head hash you reviewed, as shown by "case show"), the
signature is refused (exit 4) if anything was written since.`,
			examples: []string{
				"perfusionctl case sign $CASE --meaning authored --name 'P. Perfusionist'",
				"perfusionctl case sign $CASE --meaning reviewed --name 'Dr. R. Reviewer' --head 5:3f9a…",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				meaning := fs.String("meaning", "", "what you attest: "+strings.Join(enumNames(pb.SignatureMeaning(0).Descriptor()), ", ")+" (required)")
				name := fs.String("name", "", "your name as displayed on the record (required)")
				head := fs.String("head", "", "expected ledger head as SEQUENCE:HASH (refuse if the record moved on)")
				return func(ctx context.Context, e *env, args []string) error {
					id, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					if *meaning == "" {
						return usagef("--meaning is required (%s)", strings.Join(enumNames(pb.SignatureMeaning(0).Descriptor()), ", "))
					}
					m, err := parseEnum(pb.SignatureMeaning(0).Descriptor(), "meaning", *meaning)
					if err != nil {
						return err
					}
					req := &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning(m), SignerDisplayName: *name}
					if *head != "" {
						var seq int64
						var hash string
						if n, _ := fmt.Sscanf(strings.Replace(*head, ":", " ", 1), "%d %s", &seq, &hash); n != 2 {
							return usagef("--head: want SEQUENCE:HASH, got %q", *head)
						}
						req.ExpectedLedgerHead = &pb.LedgerHead{Sequence: seq, Hash: hash}
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := c.SignCase(ctx, req)
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					s := resp.GetSignature()
					fmt.Fprintf(e.stdout, "Signed %s as %s (%s) at %s, covering link %d %s\n\n", id, s.GetSignerDisplayName(), enumText(s.GetMeaning()),
						fmtTime(s.GetSignedAt()), s.GetCovers().GetSequence(), s.GetCovers().GetHash())
					return printCase(e, resp.GetCase())
				}
			},
		},
		{
			name: "addendum", summary: "append a late note to a signed case", args: "CASE_ID",
			examples: []string{
				"perfusionctl case addendum $CASE --text 'Post-op Hb 9.1 g/dL reported late' --reason 'lab result arrived after sign-off'",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				id := fs.String("id", "", "addendum UUID (idempotent resend); default: a new one")
				text := fs.String("text", "", "text of the addendum (required)")
				reason := fs.String("reason", "", "why the addendum was needed (required)")
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					if strings.TrimSpace(*reason) == "" {
						return usagef("--reason is required")
					}
					if *id == "" {
						*id = uuid.NewString()
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.AddAddendumResponse, error) {
						return c.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: caseID, AddendumId: *id, Text: *text, Reason: *reason})
					}, func(resp *pb.AddAddendumResponse) error {
						return printEntries(e, []*pb.Entry{resp.GetEntry()}, false)
					})
				}
			},
		},
		{
			name: "reconcile", summary: "complete a case's patient identity (any state, signed included) without touching the record", args: "CASE_ID",
			examples: []string{
				"perfusionctl case reconcile $CASE --mrn 00123456 --authority HOSP --reason 'registered after the emergency'",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				mrn := fs.String("mrn", "", "the patient's medical record number (required)")
				authority := fs.String("authority", "", "the MRN's assigning authority (required)")
				family := fs.String("family-name", "", "family name; empty keeps the recorded one")
				given := fs.String("given-name", "", "given name; empty keeps the recorded one")
				birth := fs.String("birth-date", "", "birth date YYYY-MM-DD; empty keeps the recorded one")
				reason := fs.String("reason", "", "why the identity is reconciled (required)")
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					if strings.TrimSpace(*reason) == "" {
						return usagef("--reason is required")
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					// Not retried: a reconciliation is not idempotent, and a
					// second one with the same identity only adds a link.
					resp, err := c.CaseService().ReconcileIdentity(ctx, &pb.ReconcileIdentityRequest{CaseId: caseID, Mrn: *mrn,
						AssigningAuthority: *authority, FamilyName: *family, GivenName: *given, BirthDate: *birth, Reason: *reason})
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					fmt.Fprintf(e.stdout, "Identity of %s reconciled at %s: ledger link %d %s; its held deliveries are pending again\n",
						caseID, fmtTime(resp.GetRecordedAt()), resp.GetLedgerSeq(), resp.GetLedgerHash())
					return nil
				}
			},
		},
	}
}

// caseLeaf is a command taking only a case id.
func caseLeaf(name, summary, example string, do func(ctx context.Context, e *env, id string) error) *command {
	return &command{
		name: name, summary: summary, args: "CASE_ID", examples: []string{example},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				return do(ctx, e, id)
			}
		},
	}
}

func printCase(e *env, c *pb.Case) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	d := c.GetDetails()
	p := d.GetPatient()
	row("Case", c.GetCaseId())
	row("Status", enumText(c.GetStatus()))
	row("Kind", enumText(c.GetKind()))
	row("Site", c.GetSite())
	row("Room", c.GetRoom())
	row("Scheduled", fmtTime(c.GetScheduledStart()))
	row("Created", fmtTime(c.GetCreatedAt()))
	row("Started", fmtTime(c.GetStartedAt()))
	row("Closed", fmtTime(c.GetClosedAt()))
	row("Procedure", d.GetProcedure().GetDescription())
	if name := strings.TrimSpace(p.GetFamilyName() + ", " + p.GetGivenName()); name != "," {
		row("Patient", strings.Trim(name, ", "))
	}
	row("MRN", p.GetMrn())
	if p.GetHeightCm() > 0 || p.GetWeightKg() > 0 {
		row("Height/weight", fmt.Sprintf("%s cm, %s kg", fmtNum(p.GetHeightCm()), fmtNum(p.GetWeightKg())))
	}
	if p.GetBsaM2() > 0 {
		row("BSA", fmt.Sprintf("%s m² (%s)", fmtNum(p.GetBsaM2()), enumText(p.GetBsaFormula())))
	}
	printTeamAndCircuit(row, d)
	row("Details version", fmt.Sprint(c.GetDetailsVersion()))
	row("Ledger head", fmt.Sprintf("%d:%s", c.GetLedgerHead().GetSequence(), c.GetLedgerHead().GetHash()))
	for i, s := range c.GetSignatures() {
		row(fmt.Sprintf("Signature %d", i+1), fmt.Sprintf("%s (%s), %s, %s, covers link %d", s.GetSignerDisplayName(), s.GetSigner(),
			enumText(s.GetMeaning()), fmtTime(s.GetSignedAt()), s.GetCovers().GetSequence()))
	}
	return tw.Flush()
}

func recordCommands() []*command {
	return []*command{
		{
			name: "verify", summary: "re-hash the case's whole record; exit 5 naming the first bad link", args: "CASE_ID",
			examples: []string{
				"perfusionctl record verify $CASE",
				"perfusionctl record verify $CASE --output json",
				"perfusionctl record verify $CASE --against-checkpoints",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				anchored := fs.Bool("against-checkpoints", false, "also check the chain against the server's signed checkpoint log, which lives outside the database: a truncated or rewritten tail is named")
				return func(ctx context.Context, e *env, args []string) error {
					id, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: id, AgainstCheckpoints: *anchored})
					if err != nil {
						return err
					}
					if e.json() {
						if err := e.emit(resp); err != nil {
							return err
						}
					} else if resp.GetOk() {
						fmt.Fprintf(e.stdout, "OK: %d links, %d entries, %d sample batches (%d samples) verified; head %s\n",
							resp.GetLinksVerified(), resp.GetEntriesVerified(), resp.GetSampleBatchesVerified(), resp.GetSamplesVerified(), resp.GetHeadHash())
					}
					if !resp.GetOk() {
						b := resp.GetFirstBadLink()
						msg := fmt.Sprintf("verification FAILED at link %d (%s %s): %s", b.GetSequence(), b.GetKind(), b.GetRef(), enumText(b.GetProblem()))
						if b.GetDetail() != "" {
							msg += " — " + b.GetDetail()
						}
						if !e.json() {
							fmt.Fprintf(e.stdout, "FAILED: %d links verified before the first bad link\n", resp.GetLinksVerified())
						}
						return exitCodeError{code: exitVerifyFail, msg: msg}
					}
					return nil
				}
			},
		},
		{
			name: "audit", summary: "every write to the case in ledger order: who, when, what", args: "CASE_ID",
			examples: []string{
				"perfusionctl record audit $CASE",
				"perfusionctl record audit $CASE --after 10 --output json",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				after := fs.Int64("after", 0, "only links after this sequence")
				full := fs.Bool("full-hash", false, "print whole link hashes (default: first 12 hex digits)")
				return func(ctx context.Context, e *env, args []string) error {
					id, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					all := &pb.GetAuditTrailResponse{}
					for next := *after; ; {
						resp, err := c.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: id, AfterSequence: next, PageSize: 5000})
						if err != nil {
							return err
						}
						all.Events = append(all.Events, resp.GetEvents()...)
						if resp.GetNextAfterSequence() == 0 || resp.GetNextAfterSequence() <= next {
							break
						}
						next = resp.GetNextAfterSequence()
					}
					if e.json() {
						return e.emit(all)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SEQ\tRECORDED\tKIND\tREF\tACTOR\tREASON\tHASH")
					for _, ev := range all.GetEvents() {
						h := ev.GetHash()
						if !*full {
							h = short(h)
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.GetSequence(), fmtTime(ev.GetRecordedAt()), ev.GetKind(), ev.GetRef(),
							ev.GetActor(), oneLine(ev.GetReason()), h)
					}
					return tw.Flush()
				}
			},
		},
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 60 {
		return string(r[:59]) + "…"
	}
	return s
}

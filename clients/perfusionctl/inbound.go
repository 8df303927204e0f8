package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// inboundCommands are the inbound HL7 journal's commands (admins).
func inboundCommands() []*command {
	return []*command{
		{
			name: "list", summary: "what the EHR sent (ADT, SIU), newest first: ACK, error, what each message changed",
			long: "The journal of the inbound HL7 v2 listener (perfusiond --hl7-inbound-listen). Rows carry no patient data: " +
				"codes, control ids, case ids, ledger links and field names. Administrators only.",
			examples: []string{
				"perfusionctl inbound list --ack AE",
				"perfusionctl inbound list --case $CASE",
				"perfusionctl inbound list --type SIU^S13 --from -24h --all",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				sender := fs.String("sender", "", "only this sender (allowlist name)")
				typ := fs.String("type", "", "only this message type, e.g. ADT^A08")
				ack := fs.String("ack", "", "only this ACK code: AA, AE or AR")
				caseID := fs.String("case", "", "only messages that changed or named this case")
				from := fs.String("from", "", "only messages received at or after this time")
				to := fs.String("to", "", "only messages received before this time")
				size := fs.Int("page-size", 50, "rows per page (at most 500)")
				token := fs.String("page-token", "", "page token printed by a previous list")
				all := fs.Bool("all", false, "follow page tokens and print every matching row")
				return func(ctx context.Context, e *env, args []string) error {
					if err := noArgs(args); err != nil {
						return err
					}
					req := &pb.ListInboundMessagesRequest{Sender: *sender, MessageType: *typ, AckCode: strings.ToUpper(*ack), CaseId: *caseID,
						PageSize: int32(*size), PageToken: *token}
					var err error
					now := time.Now()
					if *from != "" {
						if req.ReceivedFrom, err = parseTime("from", *from, now); err != nil {
							return err
						}
					}
					if *to != "" {
						if req.ReceivedTo, err = parseTime("to", *to, now); err != nil {
							return err
						}
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					cl := pb.NewInboundServiceClient(c.Conn())
					header := true
					for {
						resp, err := cl.ListInboundMessages(ctx, req)
						if err != nil {
							return err
						}
						if e.json() {
							if err := e.emit(resp); err != nil {
								return err
							}
						} else {
							printInbound(e, resp.GetMessages(), header)
							header = false
						}
						if !*all || resp.GetNextPageToken() == "" {
							if !e.json() && resp.GetNextPageToken() != "" {
								fmt.Fprintf(e.stderr, "more: --page-token %s\n", resp.GetNextPageToken())
							}
							return nil
						}
						req.PageToken = resp.GetNextPageToken()
					}
				}
			},
		},
		{
			name: "show", args: "MESSAGE_ID", summary: "one journal row; with --content the message as received and its ACK (patient data)",
			examples: []string{"perfusionctl inbound show 4711", "perfusionctl inbound show 4711 --content"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				content := fs.Bool("content", false, "print the message as received and the ACK sent, one segment per line (patient data: the read is audited)")
				return func(ctx context.Context, e *env, args []string) error {
					id, err := messageArg(args)
					if err != nil {
						return err
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.GetInboundMessageResponse, error) {
						return pb.NewInboundServiceClient(c.Conn()).GetInboundMessage(ctx, &pb.GetInboundMessageRequest{MessageId: id, IncludeContent: *content})
					}, func(resp *pb.GetInboundMessageResponse) error {
						printInboundDetail(e, resp.GetMessage())
						if *content {
							fmt.Fprintln(e.stdout, "\nMessage:")
							fmt.Fprintln(e.stdout, segments(resp.GetContent()))
							fmt.Fprintln(e.stdout, "\nACK:")
							fmt.Fprintln(e.stdout, segments(resp.GetAck()))
						}
						return nil
					})
				}
			},
		},
		{
			name: "replay", args: "MESSAGE_ID", summary: "process a journaled message again (after a configuration change, or one answered AE or AR)",
			long: "Runs on a server with the inbound listener. The record's writes are idempotent: a message already applied changes nothing more. " +
				"The new result replaces the row's; the earlier one is kept in its replays with your name.",
			examples: []string{"perfusionctl inbound replay 4711"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				return func(ctx context.Context, e *env, args []string) error {
					id, err := messageArg(args)
					if err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					// Not retried by the client: a replay is answered once.
					resp, err := pb.NewInboundServiceClient(c.Conn()).ReplayInboundMessage(ctx, &pb.ReplayInboundMessageRequest{MessageId: id})
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					printInboundDetail(e, resp.GetMessage())
					return nil
				}
			},
		},
	}
}

// identityCommands are the case commands about the patient's identity.
func identityCommands() []*command {
	return []*command{
		{
			name: "identity", args: "CASE_ID", summary: "how a case's patient identity came to be: details versions, reconciliations (by people and by the EHR's ADT feed)",
			examples: []string{"perfusionctl case identity $CASE"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.GetIdentityHistoryResponse, error) {
						return c.CaseService().GetIdentityHistory(ctx, &pb.GetIdentityHistoryRequest{CaseId: caseID})
					}, func(resp *pb.GetIdentityHistoryResponse) error {
						tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "LINK\tSOURCE\tRECORDED\tBY\tMRN\tAUTHORITY\tNAME\tBIRTH DATE\tREASON")
						for _, r := range resp.GetRecords() {
							src := r.GetSource()
							if r.GetDetailsVersion() > 0 {
								src += " v" + strconv.FormatInt(r.GetDetailsVersion(), 10)
							}
							fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetLedgerSequence(), src, fmtTime(r.GetRecordedAt()), r.GetActor(),
								dash(r.GetMrn()), dash(r.GetAssigningAuthority()), dash(strings.Trim(r.GetFamilyName()+", "+r.GetGivenName(), ", ")),
								dash(r.GetBirthDate()), dash(r.GetReason()))
						}
						if err := tw.Flush(); err != nil {
							return err
						}
						p := resp.GetCurrent()
						fmt.Fprintf(e.stdout, "In force (as exported): MRN %s (%s), %s, %s, born %s\n", dash(p.GetMrn()), dash(p.GetMrnAssigningAuthority()),
							dash(p.GetFamilyName()), dash(p.GetGivenName()), dash(p.GetBirthDate()))
						return nil
					})
				}
			},
		},
		{
			name: "lookup", summary: "ask the EHR (FHIR) for a patient by MRN, to fill in a new case",
			examples: []string{"perfusionctl case lookup --site MAIN --mrn 00123456 --authority HOSP"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				site := fs.String("site", "", "the site the new case is for (required)")
				mrn := fs.String("mrn", "", "medical record number (required)")
				authority := fs.String("authority", "", "its assigning authority; empty: the server's only configured one")
				return func(ctx context.Context, e *env, args []string) error {
					if err := noArgs(args); err != nil {
						return err
					}
					if *site == "" || *mrn == "" {
						return usagef("--site and --mrn are required")
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.LookupPatientResponse, error) {
						return c.CaseService().LookupPatient(ctx, &pb.LookupPatientRequest{Site: *site, Mrn: *mrn, AssigningAuthority: *authority})
					}, func(resp *pb.LookupPatientResponse) error {
						p := resp.GetPatient()
						fmt.Fprintf(e.stdout, "Patient %s (%s): %s, %s, born %s, %s (FHIR Patient/%s)\n", p.GetMrn(), dash(p.GetMrnAssigningAuthority()),
							dash(p.GetFamilyName()), dash(p.GetGivenName()), dash(p.GetBirthDate()), enumText(p.GetSex()), resp.GetFhirPatientId())
						tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "ENCOUNTER\tSTATUS\tCLASS\tSTART\tEND\tLOCATION")
						for _, en := range resp.GetEncounters() {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(en.GetEncounterId()), dash(en.GetStatus()), dash(en.GetClassCode()),
								fmtTime(en.GetStart()), fmtTime(en.GetEnd()), dash(en.GetLocation()))
						}
						return tw.Flush()
					})
				}
			},
		},
	}
}

func messageArg(args []string) (int64, error) {
	if len(args) != 1 {
		return 0, usagef("give one journal id (from perfusionctl inbound list)")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%q is not a journal id", args[0])
	}
	return id, nil
}

// segments prints an HL7 message one segment per line.
func segments(s string) string {
	return strings.TrimRight(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s), "\n")
}

func printInbound(e *env, ms []*pb.InboundMessage, header bool) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "ID\tRECEIVED\tSENDER\tTYPE\tCONTROL ID\tACK\tCHANGES\tERROR")
	}
	for _, m := range ms {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetMessageId(), fmtTime(m.GetReceivedAt()), m.GetSender(), m.GetMessageType(),
			m.GetControlId(), m.GetAckCode(), dash(changeSummary(m)), dash(m.GetError()))
	}
	_ = tw.Flush()
}

// changeSummary is "created 1, details_updated 2" for a row's changes.
func changeSummary(m *pb.InboundMessage) string {
	counts := map[string]int{}
	var order []string
	for _, c := range m.GetChanges() {
		if counts[c.GetAction()] == 0 {
			order = append(order, c.GetAction())
		}
		counts[c.GetAction()]++
	}
	parts := make([]string, 0, len(order))
	for _, a := range order {
		parts = append(parts, fmt.Sprintf("%s %d", a, counts[a]))
	}
	return strings.Join(parts, ", ")
}

func printInboundDetail(e *env, m *pb.InboundMessage) {
	fmt.Fprintf(e.stdout, "Message %d: %s from %s (%s/%s), control id %s\n", m.GetMessageId(), m.GetMessageType(), m.GetSender(),
		dash(m.GetSendingApplication()), dash(m.GetSendingFacility()), m.GetControlId())
	fmt.Fprintf(e.stdout, "Received %s, processed %s (%d attempt(s)), ACK %s %s\n", fmtTime(m.GetReceivedAt()), fmtTime(m.GetProcessedAt()),
		m.GetAttempts(), m.GetAckCode(), m.GetError())
	fmt.Fprintf(e.stdout, "SHA-256 %s\n", m.GetContentSha256())
	for _, n := range m.GetNotes() {
		fmt.Fprintf(e.stdout, "Note: %s\n", n)
	}
	if len(m.GetChanges()) > 0 {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CASE\tACTION\tLINK\tFIELDS\tDETAIL")
		for _, c := range m.GetChanges() {
			link := "-"
			if c.GetLedgerSequence() > 0 {
				link = strconv.FormatInt(c.GetLedgerSequence(), 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.GetCaseId(), c.GetAction(), link, dash(strings.Join(c.GetFields(), ",")), dash(c.GetDetail()))
		}
		_ = tw.Flush()
	}
	for _, r := range m.GetReplays() {
		fmt.Fprintf(e.stdout, "Before replay by %s: ACK %s at %s %s\n", r.GetBy(), r.GetAckCode(), fmtTime(r.GetProcessedAt()), r.GetError())
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// exportCommands preview what is sent to the hospital.
func exportCommands() []*command {
	return []*command{exportRenderCommand("hl7"), exportRenderCommand("fhir"), exportPDFCommand()}
}

// exportPDFCommand writes the printable record (ExportService.RenderDocument).
func exportPDFCommand() *command {
	return &command{
		name: "pdf", args: "CASE", summary: "write the perfusion record of a case version as a PDF (a draft for an unsigned case)",
		long: `The printed perfusion record: header, trend graphs with the event timeline,
entry tables, checklist, quality metrics, corrections, addenda, signatures and
the ledger head hash it can be verified against (printed on stderr too). A case
that is not signed yet prints as a DRAFT on every page. The PDF carries patient
identifiers; --out writes it to a new file readable only by you.`,
		examples: []string{
			"perfusionctl export pdf $CASE --out case.pdf",
			"perfusionctl export pdf $CASE --version 214 --out case-v214.pdf",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			caseFlag := fs.String("case", "", "case id (or give it as the argument)")
			version := fs.Int64("version", 0, "version: a signature's or addendum's ledger sequence; 0 the latest (the draft of an unsigned case)")
			out := fs.String("out", "", "write to this new file (mode 0600) instead of stdout")
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*caseFlag, args)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				resp, err := pb.NewExportServiceClient(c.Conn()).RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: id, Version: *version})
				if err != nil {
					return err
				}
				if err := writeOut(e, *out, resp.GetPdf()); err != nil {
					return err
				}
				what := fmt.Sprintf("version %d", resp.GetVersion())
				if resp.GetDraft() {
					what = "DRAFT (case not signed)"
				}
				fmt.Fprintf(e.stderr, "%s, %d bytes, ledger link %d hash %s\n", what, len(resp.GetPdf()), resp.GetLedgerSeq(), resp.GetLedgerHash())
				return nil
			}
		},
	}
}

func exportRenderCommand(kind string) *command {
	what := map[string]string{"hl7": "the HL7 v2 ORU^R01 (ER7, segments end in CR)", "fhir": "the FHIR R4 transaction Bundle (JSON)"}[kind]
	return &command{
		name: kind, args: "CASE", summary: "write " + what + " of a signed case version",
		long: map[string]string{
			"hl7": `Exactly what the delivery worker sends for that version, with the same message
id (printed on stderr). HL7 v2 ends each segment with a carriage return, which
a terminal shows as segments overwriting each other, so the output has one
segment per line (CR replaced by newline); --raw writes the exact bytes as
sent, and --to always does. The output carries patient identifiers; --to
writes it to a new file readable only by you.`,
			"fhir": `Exactly what the delivery worker sends for that version: the same bytes and the
same message id (printed on stderr); with --document the version's FHIR document
instead (Composition with narrative first, every referenced resource inside it),
which is not delivered. The output carries patient identifiers;
--to writes it to a new file readable only by you.`,
		}[kind],
		examples: []string{
			"perfusionctl export " + kind + " $CASE | less",
			"perfusionctl export " + kind + " $CASE --version 214 --to case-v214." + map[string]string{"hl7": "hl7", "fhir": "json"}[kind],
			map[string]string{"hl7": "perfusionctl export hl7 $CASE --device-report > devices.hl7\nperfusionctl export hl7 $CASE --document --to case-mdm.hl7", "fhir": "perfusionctl export fhir $CASE | jq '.entry[].resource.resourceType'"}[kind],
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			caseFlag := fs.String("case", "", "case id (or give it as the argument)")
			version := fs.Int64("version", 0, "version: a signature's or addendum's ledger sequence (as 'delivery list' shows); 0 the latest")
			to := fs.String("to", "", "write to this new file (mode 0600) instead of stdout")
			var device, raw, document *bool
			if kind == "fhir" {
				document = fs.Bool("document", false, "the FHIR document Bundle (Composition first, with narrative) instead of the transaction")
			}
			if kind == "hl7" {
				device = fs.Bool("device-report", false, "the device data as an IHE PCD-01 report (one-minute means) instead of the summary")
				document = fs.Bool("document", false, "the rendered record (PDF, base64 in OBX-5) as MDM^T02, or MDM^T10 for a later version, instead of the summary")
				raw = fs.Bool("raw", false, "write the exact bytes as sent (segments end in CR, no newlines) instead of one segment per line")
			}
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*caseFlag, args)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				ex := pb.NewExportServiceClient(c.Conn())
				var payload []byte
				var ver int64
				var msgID string
				if kind == "hl7" {
					msg := pb.HL7Message_HL7_MESSAGE_SUMMARY
					if *device && *document {
						return usagef("--device-report and --document exclude each other")
					}
					if *device {
						msg = pb.HL7Message_HL7_MESSAGE_DEVICE_REPORT
					}
					if *document {
						msg = pb.HL7Message_HL7_MESSAGE_DOCUMENT
					}
					resp, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: id, Version: *version, Message: msg})
					if err != nil {
						return err
					}
					payload, ver, msgID = resp.GetMessage(), resp.GetVersion(), resp.GetMessageControlId()
				} else {
					bt := pb.FHIRBundleType_FHIR_BUNDLE_TYPE_TRANSACTION
					if *document {
						bt = pb.FHIRBundleType_FHIR_BUNDLE_TYPE_DOCUMENT
					}
					resp, err := ex.RenderFHIR(ctx, &pb.RenderFHIRRequest{CaseId: id, Version: *version, BundleType: bt})
					if err != nil {
						return err
					}
					payload, ver, msgID = resp.GetBundle(), resp.GetVersion(), resp.GetBundleIdentifier()
				}
				if raw != nil && !*raw && *to == "" {
					payload = segmentLines(payload)
				}
				if err := writeOut(e, *to, payload); err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "version %d, message id %s\n", ver, msgID)
				return nil
			}
		},
	}
}

// segmentLines turns an ER7 message's CR segment terminators into
// newlines, for a terminal or a pager. Nothing else changes: a CR inside a
// field is escaped in ER7 (\X0D\), so every CR ends a segment.
func segmentLines(msg []byte) []byte {
	out := bytes.ReplaceAll(msg, []byte("\r"), []byte("\n"))
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}

// writeOut writes payload to stdout, or to a new file that only its owner
// may read (it holds patient data).
func writeOut(e *env, to string, payload []byte) (err error) {
	if to == "" {
		_, err = e.stdout.Write(payload)
		return err
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	_, err = f.Write(payload)
	return err
}

// deliveryCommands inspect and retry deliveries to the hospital.
func deliveryCommands() []*command {
	return []*command{
		{
			name: "list", summary: "list deliveries (newest first) with state, attempts, last error and ACK",
			examples: []string{
				"perfusionctl delivery list --state failed",
				"perfusionctl delivery list --case $CASE --output json",
			},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				caseID := fs.String("case", "", "only this case")
				site := fs.String("site", "", "only cases of this site")
				state := fs.String("state", "", "pending, delivering, delivered, failed, held or superseded")
				size := fs.Int("page-size", 50, "deliveries per page (at most 500)")
				token := fs.String("page-token", "", "page token printed by a previous call")
				return func(ctx context.Context, e *env, args []string) error {
					if err := noArgs(args); err != nil {
						return err
					}
					req := &pb.ListDeliveriesRequest{CaseId: *caseID, Site: *site, PageSize: int32(*size), PageToken: *token}
					if *state != "" {
						st, err := parseEnum(pb.DeliveryState(0).Descriptor(), "state", *state)
						if err != nil {
							return err
						}
						req.State = pb.DeliveryState(st)
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.ListDeliveriesResponse, error) {
						return pb.NewExportServiceClient(c.Conn()).ListDeliveries(ctx, req)
					}, func(resp *pb.ListDeliveriesResponse) error { return printDeliveries(e, resp) })
				}
			},
		},
		{
			name: "retry", args: "DELIVERY", summary: "send a failed delivery again (after the cause was fixed)",
			long:     "A delivered message is never sent again; a failed or pending one is due at once.",
			examples: []string{"perfusionctl delivery retry --case $CASE $DELIVERY"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				caseID := fs.String("case", "", "the delivery's case (required)")
				return func(ctx context.Context, e *env, args []string) error {
					if len(args) != 1 {
						return usagef("give one delivery id")
					}
					if *caseID == "" {
						return usagef("--case is required")
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.RetryDeliveryResponse, error) {
						return pb.NewExportServiceClient(c.Conn()).RetryDelivery(ctx, &pb.RetryDeliveryRequest{CaseId: *caseID, DeliveryId: args[0]})
					}, func(resp *pb.RetryDeliveryResponse) error {
						return printDeliveries(e, &pb.ListDeliveriesResponse{Deliveries: []*pb.Delivery{resp.GetDelivery()}})
					})
				}
			},
		},
		{
			name: "supersede", args: "DELIVERY", summary: "declare that a later version of the case replaces a failed or pending delivery",
			long: "Versions of a case go to each destination in order: a later one waits until every earlier one is delivered or superseded. " +
				"Supersede an earlier one the receiver refused when the later version, which carries the whole record as it then stood, " +
				"is enough; it is then never sent. The latest version cannot be superseded. The reason is recorded with your name.",
			examples: []string{`perfusionctl delivery supersede --case $CASE --reason "EHR refused v12; v14 carries the corrected record" $DELIVERY`},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				caseID := fs.String("case", "", "the delivery's case (required)")
				reason := fs.String("reason", "", "why the later version replaces it (required; no patient data)")
				return func(ctx context.Context, e *env, args []string) error {
					if len(args) != 1 {
						return usagef("give one delivery id")
					}
					if *caseID == "" || *reason == "" {
						return usagef("--case and --reason are required")
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.SupersedeDeliveryResponse, error) {
						return pb.NewExportServiceClient(c.Conn()).SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: *caseID, DeliveryId: args[0], Reason: *reason})
					}, func(resp *pb.SupersedeDeliveryResponse) error {
						return printDeliveries(e, &pb.ListDeliveriesResponse{Deliveries: []*pb.Delivery{resp.GetDelivery()}})
					})
				}
			},
		},
	}
}

func printDeliveries(e *env, resp *pb.ListDeliveriesResponse) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIVERY\tCASE\tVERSION\tDESTINATION\tSTATE\tATTEMPTS\tNEXT\tACK\tLAST ERROR")
	for _, d := range resp.GetDeliveries() {
		dest := enumText(d.GetDestination())
		state := enumText(d.GetState())
		next := "-"
		if d.GetState() == pb.DeliveryState_DELIVERY_STATE_PENDING {
			next = fmtTime(d.GetNextAttemptAt())
		}
		ack := d.GetAckCode()
		if ack == "" {
			ack = "-"
		}
		lastErr := d.GetLastError()
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.GetDeliveryId(), d.GetCaseId(), d.GetVersion(), dest, state,
			d.GetAttempts(), next, ack, lastErr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(e.stderr, "more: --page-token %s\n", t)
	}
	return nil
}

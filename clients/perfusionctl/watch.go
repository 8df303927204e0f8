package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "perfusion/api/perfusion/v1"
)

// watchCommand is `case watch`: a live view of a case in the terminal.
func watchCommand() *command {
	return &command{
		name: "watch", summary: "follow a case live: trends, entries, corrections, close and sign-off", args: "CASE_ID", live: true,
		long: `Prints what is committed to the case as it commits, from the start of the case
(or after --after), and keeps going until the case is signed or you press
Ctrl-C. Reconnects by itself after a network or server failure and resumes
exactly where it stopped. Trend lines give, per channel and bucket, the mean
with [min–max] and the number of samples; a bucket may print more than once
as its samples arrive (merge by time: counts add). --output json prints one
WatchCaseResponse per line (NDJSON). On exit the last position is printed to
stderr: pass it to --after to resume. --timeout does not apply.`,
		examples: []string{
			"perfusionctl case watch $CASE",
			"perfusionctl case watch $CASE --channels pump_flow,temp_arterial_outlet --bucket 10s",
			"perfusionctl case watch $CASE --after 42 --output json | jq -c .entries",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			after := fs.Int64("after", 0, "resume after this position (printed on exit); 0: from the start")
			bucket := fs.Duration("bucket", 5*time.Second, "trend bucket width, 100ms to 1h")
			channels := fs.String("channels", "", "comma-separated channel keys (empty: every channel): "+strings.Join(channelKeys(), ", "))
			return func(ctx context.Context, e *env, args []string) error {
				caseID, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				if *after < 0 {
					return usagef("--after must be 0 or a position")
				}
				if *bucket < 100*time.Millisecond || *bucket > time.Hour {
					return usagef("--bucket must be 100ms to 1h")
				}
				req := &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: *after, BucketWidthMs: bucket.Milliseconds()}
				for _, ch := range strings.Split(*channels, ",") {
					if ch = strings.TrimSpace(ch); ch != "" {
						req.Channels = append(req.Channels, ch)
					}
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				last := *after
				err = c.Watch(ctx, req, func(m *pb.WatchCaseResponse) error {
					last = m.GetPosition()
					if e.json() {
						b, err := protojson.Marshal(m)
						if err != nil {
							return err
						}
						_, err = fmt.Fprintln(e.stdout, string(b))
						return err
					}
					return printWatch(e, m)
				})
				fmt.Fprintf(e.stderr, "position %d (resume with --after %d)\n", last, last)
				if errors.Is(err, context.Canceled) {
					return nil // Ctrl-C: the user is done watching
				}
				return err
			}
		},
	}
}

// printWatch prints one message as lines: trends, entries, status.
func printWatch(e *env, m *pb.WatchCaseResponse) error {
	var b strings.Builder
	for _, s := range m.GetSamples() {
		for _, bk := range s.GetBuckets() {
			at := time.UnixMilli(bk.GetStartUnixMs()).UTC().Format("15:04:05Z")
			series := s.GetChannel() + "/" + s.GetSourceId()
			if bk.GetCount() == 0 {
				// Only device-invalid readings: there is no mean, min or
				// max, and a zero printed for them would read as a value
				// the device never gave (0 % saturation, 0 L/min flow).
				fmt.Fprintf(&b, "%s  trend  %-24s invalid n=0", at, series)
			} else {
				fmt.Fprintf(&b, "%s  trend  %-24s %s %s [%s–%s] n=%d", at, series,
					fmtNum(bk.GetMean()), s.GetUnit(), fmtNum(bk.GetMin()), fmtNum(bk.GetMax()), bk.GetCount())
			}
			if n := bk.GetInvalidCount(); n > 0 {
				fmt.Fprintf(&b, " invalid=%d", n)
			}
			b.WriteByte('\n')
		}
	}
	for _, en := range m.GetEntries() {
		at := en.GetOccurredAt().AsTime().UTC().Format("15:04:05Z")
		kind, text := entryKind(en), entryText(en)
		if id := en.GetSupersedesEntryId(); id != "" {
			if en.GetVoid() {
				text = "voids " + id
			} else {
				text += " (corrects " + id + ")"
			}
			text += ": " + oneLine(en.GetCorrectionReason())
		}
		fmt.Fprintf(&b, "%s  %-5s  %s  %s\n", at, kind, text, en.GetAuthor())
	}
	switch st := m.GetStatus(); {
	case m.GetFinal():
		b.WriteString("case signed: watch ended\n")
	case st != pb.CaseStatus_CASE_STATUS_UNSPECIFIED:
		fmt.Fprintf(&b, "case %s\n", enumText(st))
	}
	_, err := fmt.Fprint(e.stdout, b.String())
	return err
}

package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// kind is one kind of entry detail with its flags. apply fills the
// detail of e from the flags that were set, starting from e's existing
// detail of the same kind (for corrections) or from nothing (new entries).
type kind struct {
	name, summary, example string
	define                 func(fs *flag.FlagSet) func(e *pb.Entry, set func(string) bool) error
}

func enumFlag(fs *flag.FlagSet, name string, ed interface {
	Descriptor() protoreflect.EnumDescriptor
}, usage string) *string {
	return fs.String(name, "", usage+": "+strings.Join(enumNames(ed.Descriptor()), ", "))
}

var kinds = []kind{
	{
		name: "event", summary: "a timed event (bypass on, cross-clamp off, …)",
		example: "perfusionctl entry add event --case $CASE --type cross-clamp-on --at -2m",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			typ := enumFlag(fs, "type", pb.EventType(0), "event type (required)")
			comment := fs.String("comment", "", "free-text comment")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetEvent()).(*pb.Event)
				if d == nil {
					d = &pb.Event{}
				}
				if set("type") {
					n, err := parseEnum(pb.EventType(0).Descriptor(), "type", *typ)
					if err != nil {
						return err
					}
					d.Type = pb.EventType(n)
				}
				if set("comment") {
					d.Comment = *comment
				}
				e.Detail = &pb.Entry_Event{Event: d}
				return nil
			}
		},
	},
	{
		name: "drug", summary: "a drug dose",
		example: "perfusionctl entry add drug --case $CASE --drug heparin --dose 30000 --unit '[iU]' --route intravenous",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			drug := fs.String("drug", "", "drug name (required)")
			dose := fs.Float64("dose", 0, "dose, > 0 (required)")
			unit := fs.String("unit", "", "UCUM unit, e.g. mg, ug, [iU], mL (required)")
			route := enumFlag(fs, "route", pb.Route(0), "route")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetDrug()).(*pb.DrugDose)
				if d == nil {
					d = &pb.DrugDose{}
				}
				if set("drug") {
					d.Drug = *drug
				}
				if set("dose") {
					d.Dose = *dose
				}
				if set("unit") {
					d.Unit = *unit
				}
				if set("route") {
					n, err := parseEnum(pb.Route(0).Descriptor(), "route", *route)
					if err != nil {
						return err
					}
					d.Route = pb.Route(n)
				}
				e.Detail = &pb.Entry_Drug{Drug: d}
				return nil
			}
		},
	},
	{
		name: "fluid", summary: "a fluid volume in or out",
		example: "perfusionctl entry add fluid --case $CASE --kind crystalloid --name 'Plasma-Lyte A' --volume 500",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			k := enumFlag(fs, "kind", pb.FluidKind(0), "fluid kind (required)")
			name := fs.String("name", "", "product name")
			vol := fs.Float64("volume", 0, "volume in mL, > 0 (required)")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetFluid()).(*pb.Fluid)
				if d == nil {
					d = &pb.Fluid{}
				}
				if set("kind") {
					n, err := parseEnum(pb.FluidKind(0).Descriptor(), "kind", *k)
					if err != nil {
						return err
					}
					d.Kind = pb.FluidKind(n)
				}
				if set("name") {
					d.Name = *name
				}
				if set("volume") {
					d.VolumeMl = *vol
				}
				e.Detail = &pb.Entry_Fluid{Fluid: d}
				return nil
			}
		},
	},
	{
		name: "blood", summary: "a blood product given",
		example: "perfusionctl entry add blood --case $CASE --type prbc --units 1 --volume 280 --route circuit",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			typ := enumFlag(fs, "type", pb.BloodProductType(0), "product (required)")
			units := fs.Int("units", 0, "number of units, > 0 (required)")
			vol := fs.Float64("volume", 0, "volume in mL")
			route := enumFlag(fs, "route", pb.Route(0), "where it went")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetBloodProduct()).(*pb.BloodProduct)
				if d == nil {
					d = &pb.BloodProduct{}
				}
				if set("type") {
					n, err := parseEnum(pb.BloodProductType(0).Descriptor(), "type", *typ)
					if err != nil {
						return err
					}
					d.Type = pb.BloodProductType(n)
				}
				if set("units") {
					d.Units = int32(*units)
				}
				if set("volume") {
					d.VolumeMl = *vol
				}
				if set("route") {
					n, err := parseEnum(pb.Route(0).Descriptor(), "route", *route)
					if err != nil {
						return err
					}
					d.Route = pb.Route(n)
				}
				e.Detail = &pb.Entry_BloodProduct{BloodProduct: d}
				return nil
			}
		},
	},
	{
		name: "lab", summary: "a lab or point-of-care result (one analyte)",
		example: "perfusionctl entry add lab --case $CASE --analyte hct --value 24 --unit % --site arterial --device i-STAT",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			analyte := fs.String("analyte", "", "analyte key (required): "+strings.Join(analyteKeys(), ", "))
			value := fs.Float64("value", 0, "result in the analyte's catalogue unit (required)")
			unit := fs.String("unit", "", "UCUM unit; must be the analyte's catalogue unit (default: that unit)")
			site := enumFlag(fs, "site", pb.SampleSite(0), "sample site")
			tc := enumFlag(fs, "temp-correction", pb.TemperatureCorrection(0), "blood gas temperature correction")
			device := fs.String("device", "", "analyser, e.g. i-STAT")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetLabResult()).(*pb.LabResult)
				if d == nil {
					d = &pb.LabResult{}
				}
				if set("analyte") {
					d.Analyte = *analyte
					if !set("unit") {
						d.Unit = analyteUnit(*analyte)
					}
				}
				if set("value") {
					d.Value = *value
				}
				if set("unit") {
					d.Unit = *unit
				}
				if set("site") {
					n, err := parseEnum(pb.SampleSite(0).Descriptor(), "site", *site)
					if err != nil {
						return err
					}
					d.Site = pb.SampleSite(n)
				}
				if set("temp-correction") {
					n, err := parseEnum(pb.TemperatureCorrection(0).Descriptor(), "temp-correction", *tc)
					if err != nil {
						return err
					}
					d.TemperatureCorrection = pb.TemperatureCorrection(n)
				}
				if set("device") {
					d.Device = *device
				}
				e.Detail = &pb.Entry_LabResult{LabResult: d}
				return nil
			}
		},
	},
	{
		name: "note", summary: "a free-text note",
		example: "perfusionctl entry add note --case $CASE --text 'Venous line chatter, volume given'",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			text := fs.String("text", "", "the note (required, at most 8,000 characters)")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetNote()).(*pb.Note)
				if d == nil {
					d = &pb.Note{}
				}
				if set("text") {
					d.Text = *text
				}
				e.Detail = &pb.Entry_Note{Note: d}
				return nil
			}
		},
	},
	{
		name: "checklist", summary: "one pre-bypass checklist item",
		example: "perfusionctl entry add checklist --case $CASE --section pump --item 'occlusion set' --state checked",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			section := fs.String("section", "", "section, e.g. patient, pump, gas supply (required)")
			item := fs.String("item", "", "item, e.g. 'occlusion set' (required)")
			state := enumFlag(fs, "state", pb.ChecklistItemState(0), "state (required)")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetChecklistItem()).(*pb.ChecklistItem)
				if d == nil {
					d = &pb.ChecklistItem{}
				}
				if set("section") {
					d.Section = *section
				}
				if set("item") {
					d.Item = *item
				}
				if set("state") {
					n, err := parseEnum(pb.ChecklistItemState(0).Descriptor(), "state", *state)
					if err != nil {
						return err
					}
					d.State = pb.ChecklistItemState(n)
				}
				e.Detail = &pb.Entry_ChecklistItem{ChecklistItem: d}
				return nil
			}
		},
	},
	{
		name: "artifact", summary: "mark device data in a time range as artifact",
		example: "perfusionctl entry add artifact --case $CASE --channel pump_flow --start -15m --end -14m --artifact-reason 'line flush'",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			channel := fs.String("channel", "", "channel key (required): "+strings.Join(channelKeys(), ", "))
			source := fs.String("source", "", "device source; empty: every source")
			start := fs.String("start", "", "start of the range, inclusive (required)")
			end := fs.String("end", "", "end of the range, exclusive (required)")
			reason := fs.String("artifact-reason", "", "why it is artifact, e.g. 'line flush' (required)")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetArtifactMark()).(*pb.ArtifactMark)
				if d == nil {
					d = &pb.ArtifactMark{}
				}
				now := time.Now()
				var err error
				if set("channel") {
					d.Channel = *channel
				}
				if set("source") {
					d.SourceId = *source
				}
				if set("start") {
					if d.Start, err = parseTime("start", *start, now); err != nil {
						return err
					}
				}
				if set("end") {
					if d.End, err = parseTime("end", *end, now); err != nil {
						return err
					}
				}
				if set("artifact-reason") {
					d.Reason = *reason
				}
				e.Detail = &pb.Entry_ArtifactMark{ArtifactMark: d}
				return nil
			}
		},
	},
	{
		name: "cardioplegia", summary: "a cardioplegia dose",
		example: "perfusionctl entry add cardioplegia --case $CASE --solution 'del Nido' --volume 1000 --route antegrade --phase induction --temp 8",
		define: func(fs *flag.FlagSet) func(*pb.Entry, func(string) bool) error {
			solution := fs.String("solution", "", "solution, e.g. 'del Nido' (required)")
			route := enumFlag(fs, "route", pb.CardioplegiaRoute(0), "route")
			vol := fs.Float64("volume", 0, "volume in mL, > 0 (required)")
			temp := fs.Float64("temp", 0, "solution temperature in °C")
			phase := enumFlag(fs, "phase", pb.CardioplegiaPhase(0), "phase")
			return func(e *pb.Entry, set func(string) bool) error {
				d := proto.Clone(e.GetCardioplegia()).(*pb.CardioplegiaDose)
				if d == nil {
					d = &pb.CardioplegiaDose{}
				}
				if set("solution") {
					d.Solution = *solution
				}
				if set("route") {
					n, err := parseEnum(pb.CardioplegiaRoute(0).Descriptor(), "route", *route)
					if err != nil {
						return err
					}
					d.Route = pb.CardioplegiaRoute(n)
				}
				if set("volume") {
					d.VolumeMl = *vol
				}
				if set("temp") {
					d.TemperatureC = *temp
				}
				if set("phase") {
					n, err := parseEnum(pb.CardioplegiaPhase(0).Descriptor(), "phase", *phase)
					if err != nil {
						return err
					}
					d.Phase = pb.CardioplegiaPhase(n)
				}
				e.Detail = &pb.Entry_Cardioplegia{Cardioplegia: d}
				return nil
			}
		},
	},
}

func entryCommands() []*command {
	var add, correct []*command
	for _, k := range kinds {
		add = append(add, &command{
			name: k.name, summary: k.summary, examples: []string{k.example},
			long: "Records a new entry. --at is when it happened (default now); --id makes a resend idempotent.",
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (required)")
				at := fs.String("at", "now", "when it happened: RFC 3339, \"now\" or an offset like -5m")
				id := fs.String("id", "", "entry UUID for an idempotent resend (repeat --at too: same id, same content); default: a new one")
				apply := k.define(fs)
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					ent := &pb.Entry{EntryId: *id, CaseId: caseID}
					if ent.EntryId == "" {
						ent.EntryId = uuid.NewString()
					}
					if ent.OccurredAt, err = parseTime("at", *at, time.Now()); err != nil {
						return err
					}
					if err := apply(ent, flagSet(fs)); err != nil {
						return err
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					resp, err := c.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: ent})
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					if resp.GetDuplicate() {
						fmt.Fprintln(e.stdout, "(already recorded; nothing new stored)")
					}
					return printEntries(e, []*pb.Entry{resp.GetEntry()}, false)
				}
			},
		})
		correct = append(correct, &command{
			name: k.name, summary: "correct a " + k.name + " entry",
			long: `Supersedes --entry with a replacement: the entry's current values, changed by
the flags you give. The corrected entry stays readable in "entry list --history".`,
			examples: []string{strings.Replace(strings.Replace(k.example, "entry add", "entry correct", 1), "--case $CASE", "--case $CASE --entry $ENTRY --reason 'wrong value charted'", 1)},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (required)")
				target := fs.String("entry", "", "id of the entry to correct (required)")
				reason := fs.String("reason", "", "why it is corrected (required)")
				at := fs.String("at", "", "new clinical time; default: the corrected entry's")
				id := fs.String("id", "", "correction UUID (idempotent resend); default: a new one")
				apply := k.define(fs)
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					if *target == "" {
						return usagef("--entry is required: the id of the entry to correct")
					}
					if strings.TrimSpace(*reason) == "" {
						return usagef("--reason is required")
					}
					c, err := e.Client(ctx)
					if err != nil {
						return err
					}
					orig, err := findEntry(ctx, e, caseID, *target)
					if err != nil {
						return err
					}
					if got := entryKind(orig); got != k.name {
						return usagef("entry %s is a %s entry; use 'entry correct %s'", *target, got, got)
					}
					repl := &pb.Entry{OccurredAt: orig.GetOccurredAt(), Detail: orig.Detail}
					if *at != "" {
						if repl.OccurredAt, err = parseTime("at", *at, time.Now()); err != nil {
							return err
						}
					}
					if err := apply(repl, flagSet(fs)); err != nil {
						return err
					}
					if *id == "" {
						*id = uuid.NewString()
					}
					resp, err := c.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: caseID, EntryId: *id, SupersedesEntryId: *target, Reason: *reason, Replacement: repl})
					if err != nil {
						return err
					}
					if e.json() {
						return e.emit(resp)
					}
					return printEntries(e, []*pb.Entry{resp.GetEntry()}, false)
				}
			},
		})
	}
	return []*command{
		{name: "add", summary: "chart a new entry", subs: add},
		{
			name: "list", summary: "list a case's entries (current view, or --history)", args: "CASE_ID",
			examples: []string{"perfusionctl entry list $CASE", "perfusionctl entry list $CASE --history"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (or give it as the argument)")
				hist := fs.Bool("history", false, "include superseded entries and voids")
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.ListEntriesResponse, error) {
						return c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: *hist})
					}, func(resp *pb.ListEntriesResponse) error {
						return printEntries(e, resp.GetEntries(), *hist)
					})
				}
			},
		},
		{name: "correct", summary: "supersede an entry with a corrected one (--reason required)", subs: correct},
		{
			name: "void", summary: "void an entry without replacement (--reason required)",
			examples: []string{"perfusionctl entry void --case $CASE --entry $ENTRY --reason 'charted on the wrong case'"},
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				cs := fs.String("case", "", "case id (required)")
				target := fs.String("entry", "", "id of the entry to void (required)")
				reason := fs.String("reason", "", "why it is voided (required)")
				id := fs.String("id", "", "void UUID (idempotent resend); default: a new one")
				return func(ctx context.Context, e *env, args []string) error {
					caseID, err := caseArg(*cs, args)
					if err != nil {
						return err
					}
					if *target == "" {
						return usagef("--entry is required: the id of the entry to void")
					}
					if strings.TrimSpace(*reason) == "" {
						return usagef("--reason is required")
					}
					if *id == "" {
						*id = uuid.NewString()
					}
					return call(ctx, e, func(c *perfusion.Client) (*pb.CorrectEntryResponse, error) {
						return c.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: caseID, EntryId: *id, SupersedesEntryId: *target, Reason: *reason, Void: true})
					}, func(resp *pb.CorrectEntryResponse) error {
						return printEntries(e, []*pb.Entry{resp.GetEntry()}, false)
					})
				}
			},
		},
	}
}

func flagSet(fs *flag.FlagSet) func(string) bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return func(n string) bool { return set[n] }
}

// findEntry reads the case's history for one entry: NotFound (exit 3)
// when there is none.
func findEntry(ctx context.Context, e *env, caseID, entryID string) (*pb.Entry, error) {
	c, err := e.Client(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: true})
	if err != nil {
		return nil, err
	}
	for _, en := range resp.GetEntries() {
		if en.GetEntryId() == entryID {
			return en, nil
		}
	}
	return nil, exitCodeError{code: exitNotFound, msg: fmt.Sprintf("no entry %s on case %s", entryID, caseID)}
}

func entryKind(en *pb.Entry) string {
	switch en.Detail.(type) {
	case *pb.Entry_Event:
		return "event"
	case *pb.Entry_Drug:
		return "drug"
	case *pb.Entry_Fluid:
		return "fluid"
	case *pb.Entry_BloodProduct:
		return "blood"
	case *pb.Entry_LabResult:
		return "lab"
	case *pb.Entry_ChecklistItem:
		return "checklist"
	case *pb.Entry_Note:
		return "note"
	case *pb.Entry_ArtifactMark:
		return "artifact"
	case *pb.Entry_Cardioplegia:
		return "cardioplegia"
	case *pb.Entry_Addendum:
		return "addendum"
	}
	if en.GetVoid() {
		return "void"
	}
	return "?"
}

func entryText(en *pb.Entry) string {
	switch d := en.Detail.(type) {
	case *pb.Entry_Event:
		return strings.TrimSpace(enumText(d.Event.GetType()) + " " + d.Event.GetComment())
	case *pb.Entry_Drug:
		s := fmt.Sprintf("%s %s %s", d.Drug.GetDrug(), fmtNum(d.Drug.GetDose()), d.Drug.GetUnit())
		if r := enumText(d.Drug.GetRoute()); r != "" {
			s += " " + r
		}
		return s
	case *pb.Entry_Fluid:
		return strings.TrimSpace(fmt.Sprintf("%s %s %s mL", enumText(d.Fluid.GetKind()), d.Fluid.GetName(), fmtNum(d.Fluid.GetVolumeMl())))
	case *pb.Entry_BloodProduct:
		s := fmt.Sprintf("%s × %d", enumText(d.BloodProduct.GetType()), d.BloodProduct.GetUnits())
		if v := d.BloodProduct.GetVolumeMl(); v > 0 {
			s += fmt.Sprintf(", %s mL", fmtNum(v))
		}
		if r := enumText(d.BloodProduct.GetRoute()); r != "" {
			s += " " + r
		}
		return s
	case *pb.Entry_LabResult:
		l := d.LabResult
		return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", l.GetAnalyte(), fmtNum(l.GetValue()), l.GetUnit(), enumText(l.GetSite())))
	case *pb.Entry_ChecklistItem:
		return fmt.Sprintf("%s / %s: %s", d.ChecklistItem.GetSection(), d.ChecklistItem.GetItem(), enumText(d.ChecklistItem.GetState()))
	case *pb.Entry_Note:
		return oneLine(d.Note.GetText())
	case *pb.Entry_ArtifactMark:
		a := d.ArtifactMark
		return fmt.Sprintf("%s %s … %s: %s", a.GetChannel(), fmtTime(a.GetStart()), fmtTime(a.GetEnd()), oneLine(a.GetReason()))
	case *pb.Entry_Cardioplegia:
		cp := d.Cardioplegia
		return strings.TrimSpace(fmt.Sprintf("%s %s mL %s %s", cp.GetSolution(), fmtNum(cp.GetVolumeMl()), enumText(cp.GetRoute()), enumText(cp.GetPhase())))
	case *pb.Entry_Addendum:
		return oneLine(d.Addendum.GetText()) + " (reason: " + oneLine(d.Addendum.GetReason()) + ")"
	}
	return ""
}

func printEntries(e *env, entries []*pb.Entry, history bool) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tOCCURRED\tKIND\tDETAIL\tAUTHOR\tNOTES")
	for _, en := range entries {
		var notes []string
		if en.GetLate() {
			notes = append(notes, "late (recorded "+fmtTime(en.GetRecordedAt())+")")
		}
		if s := en.GetSupersedesEntryId(); s != "" {
			verb := "corrects"
			if en.GetVoid() {
				verb = "voids"
			}
			notes = append(notes, fmt.Sprintf("%s %s: %s", verb, s, oneLine(en.GetCorrectionReason())))
		}
		if s := en.GetSupersededByEntryId(); s != "" {
			notes = append(notes, "superseded by "+s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", en.GetEntryId(), fmtTime(en.GetOccurredAt()), entryKind(en), entryText(en), en.GetAuthor(), strings.Join(notes, "; "))
	}
	return tw.Flush()
}

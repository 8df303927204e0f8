package main

import (
	"context"
	"flag"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// detailFlags defines the case-details flags shared by create and update.
// apply changes d only where a flag was set.
func detailFlags(fs *flag.FlagSet) func(d *pb.CaseDetails, set func(string) bool) error {
	mrn := fs.String("mrn", "", "patient medical record number")
	auth := fs.String("mrn-authority", "", "assigning authority of the MRN")
	family := fs.String("family", "", "patient family name")
	given := fs.String("given", "", "patient given name")
	birth := fs.String("birth-date", "", "patient date of birth YYYY-MM-DD")
	sex := enumFlag(fs, "sex", pb.Sex(0), "patient administrative sex")
	height := fs.Float64("height", 0, "patient height in cm")
	weight := fs.Float64("weight", 0, "patient weight in kg")
	blood := fs.String("blood-type", "", "ABO/Rh blood type, e.g. 'O Rh(D) negative'")
	allergies := fs.String("allergies", "", "known allergies, comma-separated")
	bsa := enumFlag(fs, "bsa-formula", pb.BsaFormula(0), "body-surface-area formula")
	procedure := fs.String("procedure", "", "procedure description, e.g. 'CABG x3'")
	snomed := fs.String("snomed", "", "SNOMED CT code of the procedure")
	encounter := fs.String("encounter", "", "hospital encounter (visit) id")
	surgeon := fs.String("surgeon", "", "surgeon as STAFF_ID:Display Name")
	anaes := fs.String("anesthesiologist", "", "anaesthesiologist as STAFF_ID:Display Name")
	perf := fs.String("perfusionists", "", "perfusionists, primary first, as STAFF_ID:Name,STAFF_ID:Name")
	circuit := circuitFlags(fs)
	return func(d *pb.CaseDetails, set func(string) bool) error {
		if d.Patient == nil {
			d.Patient = &pb.Patient{}
		}
		if d.Procedure == nil {
			d.Procedure = &pb.Procedure{}
		}
		if d.Team == nil {
			d.Team = &pb.Team{}
		}
		p := d.Patient
		str := func(name string, dst *string, v string) {
			if set(name) {
				*dst = v
			}
		}
		str("mrn", &p.Mrn, *mrn)
		str("mrn-authority", &p.MrnAssigningAuthority, *auth)
		str("family", &p.FamilyName, *family)
		str("given", &p.GivenName, *given)
		str("birth-date", &p.BirthDate, *birth)
		str("blood-type", &p.BloodType, *blood)
		str("procedure", &d.Procedure.Description, *procedure)
		str("snomed", &d.Procedure.SnomedCode, *snomed)
		str("encounter", &d.Procedure.EncounterId, *encounter)
		if set("height") {
			p.HeightCm = *height
		}
		if set("weight") {
			p.WeightKg = *weight
		}
		if set("allergies") {
			p.Allergies = nil
			for _, a := range strings.Split(*allergies, ",") {
				if a = strings.TrimSpace(a); a != "" {
					p.Allergies = append(p.Allergies, a)
				}
			}
		}
		if set("sex") {
			n, err := parseEnum(pb.Sex(0).Descriptor(), "sex", *sex)
			if err != nil {
				return err
			}
			p.Sex = pb.Sex(n)
		}
		if set("bsa-formula") {
			n, err := parseEnum(pb.BsaFormula(0).Descriptor(), "bsa-formula", *bsa)
			if err != nil {
				return err
			}
			p.BsaFormula = pb.BsaFormula(n)
		}
		if set("surgeon") {
			d.Team.Surgeon = staff(*surgeon)
		}
		if set("anesthesiologist") {
			d.Team.Anesthesiologist = staff(*anaes)
		}
		if set("perfusionists") {
			d.Team.Perfusionists = nil
			for _, s := range strings.Split(*perf, ",") {
				if s = strings.TrimSpace(s); s != "" {
					d.Team.Perfusionists = append(d.Team.Perfusionists, staff(s))
				}
			}
		}
		p.BsaM2 = 0 // output only
		return circuit(d, set)
	}
}

func staff(s string) *pb.StaffMember {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	id, name, ok := strings.Cut(s, ":")
	if !ok {
		return &pb.StaffMember{StaffId: strings.TrimSpace(s), DisplayName: strings.TrimSpace(s)}
	}
	return &pb.StaffMember{StaffId: strings.TrimSpace(id), DisplayName: strings.TrimSpace(name)}
}

func updateCommand() *command {
	return &command{
		name: "update", summary: "store a new version of a case's details", args: "CASE_ID",
		long: `Reads the case, changes the details you give flags for, and stores the whole
new version. The update names the version it edited (--expect-version, default:
the version just read), so a concurrent edit is refused (exit 4), never lost.
--reason is required once the case has started.`,
		examples: []string{
			"perfusionctl case update $CASE --weight 72.5 --reason 'weighed in the OR'",
			"perfusionctl case update $CASE --surgeon 'S123:Dr. A. Surgeon' --perfusionists 'P1:P. One,P2:P. Two' --expect-version 3",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			cs := fs.String("case", "", "case id (or give it as the argument)")
			reason := fs.String("reason", "", "why the details changed (required after the case started)")
			expect := fs.Int64("expect-version", 0, "details version you edited; default: the current one")
			apply := detailFlags(fs)
			return func(ctx context.Context, e *env, args []string) error {
				id, err := caseArg(*cs, args)
				if err != nil {
					return err
				}
				c, err := e.Client(ctx)
				if err != nil {
					return err
				}
				got, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
				if err != nil {
					return err
				}
				d := proto.Clone(got.GetCase().GetDetails()).(*pb.CaseDetails)
				if d == nil {
					d = &pb.CaseDetails{}
				}
				if err := apply(d, flagSet(fs)); err != nil {
					return err
				}
				version := got.GetCase().GetDetailsVersion()
				if *expect != 0 {
					version = *expect
				}
				resp, err := c.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: id, ExpectedDetailsVersion: version, Details: d, Reason: *reason})
				if err != nil {
					return err
				}
				if e.json() {
					return e.emit(resp)
				}
				return printCase(e, resp.GetCase())
			}
		},
	}
}

package server

import (
	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// caseOut renders a case for a response.
func caseOut(c *charting.Case) *pb.Case {
	out := &pb.Case{
		CaseId:         c.ID.String(),
		Status:         caseStatuses.enum(string(c.Status)),
		Kind:           caseKinds.enum(string(c.Kind)),
		Site:           c.Site,
		Room:           c.Room,
		ScheduledStart: ts(c.ScheduledStart),
		Details:        detailsOut(c.Details),
		DetailsVersion: c.DetailsVersion,
		CreatedAt:      ts(c.CreatedAt),
		StartedAt:      ts(c.StartedAt),
		ClosedAt:       ts(c.ClosedAt),
		LedgerHead:     headOut(c.Head),
	}
	for _, s := range c.Signatures {
		out.Signatures = append(out.Signatures, signatureOut(s))
	}
	return out
}

func signatureOut(s charting.Signature) *pb.Signature {
	return &pb.Signature{
		Signer:            s.Signer,
		SignerDisplayName: s.DisplayName,
		Meaning:           signatureMeanings.enum(string(s.Meaning)),
		SignedAt:          ts(s.SignedAt),
		Covers:            headOut(charting.Head{Seq: s.CoversSeq, Hash: s.CoversHash}),
	}
}

// detailsIn converts case details; field names in violations start with
// prefix (e.g. "details.").
func (p *parser) detailsIn(prefix string, d *pb.CaseDetails) charting.Details {
	var out charting.Details
	if d == nil {
		return out
	}
	if pt := d.GetPatient(); pt != nil {
		out.Patient = charting.Patient{
			MRN:                   pt.GetMrn(),
			MRNAssigningAuthority: pt.GetMrnAssigningAuthority(),
			FamilyName:            pt.GetFamilyName(),
			GivenName:             pt.GetGivenName(),
			BirthDate:             pt.GetBirthDate(),
			Sex:                   sexes.parse(p, prefix+"patient.sex", pt.GetSex()),
			HeightCm:              pt.GetHeightCm(),
			WeightKg:              pt.GetWeightKg(),
			BloodType:             pt.GetBloodType(),
			Allergies:             pt.GetAllergies(),
			BSAFormula:            charting.BSAFormula(bsaFormulas.parse(p, prefix+"patient.bsa_formula", pt.GetBsaFormula())),
			// bsa_m2 is output only: the store computes it.
		}
	}
	if t := d.GetTeam(); t != nil {
		out.Team = charting.Team{Surgeon: staffIn(t.GetSurgeon()), Anesthesiologist: staffIn(t.GetAnesthesiologist())}
		for _, m := range t.GetPerfusionists() {
			out.Team.Perfusionists = append(out.Team.Perfusionists, staffIn(m))
		}
	}
	if pr := d.GetProcedure(); pr != nil {
		out.Procedure = charting.Procedure{Description: pr.GetDescription(), SnomedCode: pr.GetSnomedCode(), EncounterID: pr.GetEncounterId()}
	}
	if c := d.GetCircuit(); c != nil {
		out.Circuit = charting.Circuit{
			ArterialPump:       pumpTypes.parse(p, prefix+"circuit.arterial_pump", c.GetArterialPump()),
			Oxygenator:         componentIn(c.GetOxygenator()),
			Reservoir:          reservoirTypes.parse(p, prefix+"circuit.reservoir", c.GetReservoir()),
			ArterialFilter:     componentIn(c.GetArterialFilter()),
			CardioplegiaSystem: c.GetCardioplegiaSystem(),
			CellSalvage:        c.GetCellSalvage(),
			Ultrafiltration:    c.GetUltrafiltration(),
		}
		for _, k := range c.GetCannulae() {
			out.Circuit.Cannulae = append(out.Circuit.Cannulae, charting.Cannula{Site: k.GetSite(), SizeFr: k.GetSizeFr(), Model: k.GetModel()})
		}
	}
	if pr := d.GetPrime(); pr != nil {
		out.Prime.RAPVolumeML = pr.GetRapVolumeMl()
		for _, c := range pr.GetComponents() {
			out.Prime.Components = append(out.Prime.Components, charting.PrimeComponent{Name: c.GetName(), VolumeML: c.GetVolumeMl()})
		}
	}
	return out
}

func staffIn(m *pb.StaffMember) charting.StaffMember {
	return charting.StaffMember{StaffID: m.GetStaffId(), DisplayName: m.GetDisplayName()}
}

func componentIn(c *pb.Component) charting.Component {
	return charting.Component{Model: c.GetModel(), Lot: c.GetLot(), UDI: c.GetUdi()}
}

func detailsOut(d charting.Details) *pb.CaseDetails {
	p := d.Patient
	out := &pb.CaseDetails{
		Patient: &pb.Patient{
			Mrn:                   p.MRN,
			MrnAssigningAuthority: p.MRNAssigningAuthority,
			FamilyName:            p.FamilyName,
			GivenName:             p.GivenName,
			BirthDate:             p.BirthDate,
			Sex:                   sexes.enum(p.Sex),
			HeightCm:              p.HeightCm,
			WeightKg:              p.WeightKg,
			BloodType:             p.BloodType,
			Allergies:             p.Allergies,
			BsaFormula:            bsaFormulas.enum(string(p.BSAFormula)),
			BsaM2:                 p.BSAM2,
		},
		Team: &pb.Team{Surgeon: staffOut(d.Team.Surgeon), Anesthesiologist: staffOut(d.Team.Anesthesiologist)},
		Procedure: &pb.Procedure{
			Description: d.Procedure.Description,
			SnomedCode:  d.Procedure.SnomedCode,
			EncounterId: d.Procedure.EncounterID,
		},
		Circuit: &pb.Circuit{
			ArterialPump:       pumpTypes.enum(d.Circuit.ArterialPump),
			Oxygenator:         componentOut(d.Circuit.Oxygenator),
			Reservoir:          reservoirTypes.enum(d.Circuit.Reservoir),
			ArterialFilter:     componentOut(d.Circuit.ArterialFilter),
			CardioplegiaSystem: d.Circuit.CardioplegiaSystem,
			CellSalvage:        d.Circuit.CellSalvage,
			Ultrafiltration:    d.Circuit.Ultrafiltration,
		},
		Prime: &pb.Prime{RapVolumeMl: d.Prime.RAPVolumeML},
	}
	for _, m := range d.Team.Perfusionists {
		out.Team.Perfusionists = append(out.Team.Perfusionists, staffOut(m))
	}
	for _, k := range d.Circuit.Cannulae {
		out.Circuit.Cannulae = append(out.Circuit.Cannulae, &pb.Cannula{Site: k.Site, SizeFr: k.SizeFr, Model: k.Model})
	}
	for _, c := range d.Prime.Components {
		out.Prime.Components = append(out.Prime.Components, &pb.PrimeComponent{Name: c.Name, VolumeMl: c.VolumeML})
	}
	if b := d.Booking; b != nil {
		out.Booking = &pb.Booking{AppointmentId: b.AppointmentID, Sender: b.Sender, Cancelled: b.Cancelled, Reason: b.Reason, ReplacedBy: b.ReplacedBy}
	}
	return out
}

func staffOut(m charting.StaffMember) *pb.StaffMember {
	return &pb.StaffMember{StaffId: m.StaffID, DisplayName: m.DisplayName}
}

func componentOut(c charting.Component) *pb.Component {
	return &pb.Component{Model: c.Model, Lot: c.Lot, Udi: c.UDI}
}

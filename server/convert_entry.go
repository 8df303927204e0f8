package server

import (
	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// entryIn converts a client's entry: ids, occurred-at and detail. Output
// only and correction fields are not read; the store sets or refuses them.
// Field names in violations start with prefix ("entry." or
// "replacement."), matching the request message.
func (p *parser) entryIn(prefix string, e *pb.Entry, caseField string) charting.Entry {
	return charting.Entry{
		ID:         p.id(prefix+"entry_id", e.GetEntryId(), true),
		CaseID:     p.id(caseField, e.GetCaseId(), true),
		OccurredAt: p.time(prefix+"occurred_at", e.GetOccurredAt()),
		Detail:     p.detailIn(prefix, e),
	}
}

// detailIn converts the entry's oneof detail. An unset detail stays empty;
// the domain then says "exactly one detail is required".
func (p *parser) detailIn(prefix string, e *pb.Entry) charting.EntryDetail {
	var d charting.EntryDetail
	switch x := e.GetDetail().(type) {
	case *pb.Entry_Event:
		f := prefix + "event."
		d.Event = &charting.Event{Type: eventTypes.parse(p, f+"type", x.Event.GetType()), Comment: x.Event.GetComment()}
	case *pb.Entry_Drug:
		f := prefix + "drug."
		d.Drug = &charting.DrugDose{Drug: x.Drug.GetDrug(), Dose: x.Drug.GetDose(), Unit: x.Drug.GetUnit(),
			Route: routes.parse(p, f+"route", x.Drug.GetRoute())}
	case *pb.Entry_Fluid:
		f := prefix + "fluid."
		d.Fluid = &charting.Fluid{Kind: fluidKinds.parse(p, f+"kind", x.Fluid.GetKind()), Name: x.Fluid.GetName(), VolumeML: x.Fluid.GetVolumeMl()}
	case *pb.Entry_BloodProduct:
		f, b := prefix+"blood_product.", x.BloodProduct
		d.BloodProduct = &charting.BloodProduct{Type: bloodProductTypes.parse(p, f+"type", b.GetType()), Units: b.GetUnits(),
			VolumeML: b.GetVolumeMl(), Route: routes.parse(p, f+"route", b.GetRoute())}
	case *pb.Entry_LabResult:
		f, l := prefix+"lab_result.", x.LabResult
		d.LabResult = &charting.LabResult{Analyte: l.GetAnalyte(), Value: l.GetValue(), Unit: l.GetUnit(),
			Site:                  sampleSites.parse(p, f+"site", l.GetSite()),
			TemperatureCorrection: temperatureCorrections.parse(p, f+"temperature_correction", l.GetTemperatureCorrection()),
			Device:                l.GetDevice()}
	case *pb.Entry_ChecklistItem:
		f, c := prefix+"checklist_item.", x.ChecklistItem
		d.ChecklistItem = &charting.ChecklistItem{Section: c.GetSection(), Item: c.GetItem(), State: checklistStates.parse(p, f+"state", c.GetState())}
	case *pb.Entry_Note:
		d.Note = &charting.Note{Text: x.Note.GetText()}
	case *pb.Entry_ArtifactMark:
		f, m := prefix+"artifact_mark.", x.ArtifactMark
		d.ArtifactMark = &charting.ArtifactMark{Channel: m.GetChannel(), SourceID: m.GetSourceId(),
			Start: p.time(f+"start", m.GetStart()), End: p.time(f+"end", m.GetEnd()), Reason: m.GetReason()}
	case *pb.Entry_Cardioplegia:
		f, c := prefix+"cardioplegia.", x.Cardioplegia
		d.Cardioplegia = &charting.CardioplegiaDose{Solution: c.GetSolution(), Route: cardioplegiaRoutes.parse(p, f+"route", c.GetRoute()),
			VolumeML: c.GetVolumeMl(), TemperatureC: c.GetTemperatureC(), Phase: cardioplegiaPhases.parse(p, f+"phase", c.GetPhase())}
	case *pb.Entry_Addendum:
		d.Addendum = &charting.Addendum{Text: x.Addendum.GetText(), Reason: x.Addendum.GetReason()}
	}
	return d
}

// entryOut renders a stored entry with its server fields.
func entryOut(e *charting.Entry) *pb.Entry {
	out := &pb.Entry{
		EntryId:             e.ID.String(),
		CaseId:              e.CaseID.String(),
		OccurredAt:          ts(e.OccurredAt),
		RecordedAt:          ts(e.RecordedAt),
		Late:                e.Late,
		Author:              e.Author,
		SupersedesEntryId:   idString(e.Supersedes),
		CorrectionReason:    e.Reason,
		Void:                e.Void,
		SupersededByEntryId: idString(e.SupersededBy),
	}
	d := e.Detail
	switch {
	case d.Event != nil:
		out.Detail = &pb.Entry_Event{Event: &pb.Event{Type: eventTypes.enum(d.Event.Type), Comment: d.Event.Comment}}
	case d.Drug != nil:
		out.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: d.Drug.Drug, Dose: d.Drug.Dose, Unit: d.Drug.Unit, Route: routes.enum(d.Drug.Route)}}
	case d.Fluid != nil:
		out.Detail = &pb.Entry_Fluid{Fluid: &pb.Fluid{Kind: fluidKinds.enum(d.Fluid.Kind), Name: d.Fluid.Name, VolumeMl: d.Fluid.VolumeML}}
	case d.BloodProduct != nil:
		b := d.BloodProduct
		out.Detail = &pb.Entry_BloodProduct{BloodProduct: &pb.BloodProduct{Type: bloodProductTypes.enum(b.Type), Units: b.Units,
			VolumeMl: b.VolumeML, Route: routes.enum(b.Route)}}
	case d.LabResult != nil:
		l := d.LabResult
		out.Detail = &pb.Entry_LabResult{LabResult: &pb.LabResult{Analyte: l.Analyte, Value: l.Value, Unit: l.Unit,
			Site: sampleSites.enum(l.Site), TemperatureCorrection: temperatureCorrections.enum(l.TemperatureCorrection), Device: l.Device}}
	case d.ChecklistItem != nil:
		c := d.ChecklistItem
		out.Detail = &pb.Entry_ChecklistItem{ChecklistItem: &pb.ChecklistItem{Section: c.Section, Item: c.Item, State: checklistStates.enum(c.State)}}
	case d.Note != nil:
		out.Detail = &pb.Entry_Note{Note: &pb.Note{Text: d.Note.Text}}
	case d.ArtifactMark != nil:
		m := d.ArtifactMark
		out.Detail = &pb.Entry_ArtifactMark{ArtifactMark: &pb.ArtifactMark{Channel: m.Channel, SourceId: m.SourceID,
			Start: ts(m.Start), End: ts(m.End), Reason: m.Reason}}
	case d.Cardioplegia != nil:
		c := d.Cardioplegia
		out.Detail = &pb.Entry_Cardioplegia{Cardioplegia: &pb.CardioplegiaDose{Solution: c.Solution, Route: cardioplegiaRoutes.enum(c.Route),
			VolumeMl: c.VolumeML, TemperatureC: c.TemperatureC, Phase: cardioplegiaPhases.enum(c.Phase)}}
	case d.Addendum != nil:
		out.Detail = &pb.Entry_Addendum{Addendum: &pb.Addendum{Text: d.Addendum.Text, Reason: d.Addendum.Reason}}
	}
	return out
}

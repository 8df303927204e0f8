package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/hl7/fhir"
)

// PatientLookup finds a patient and their encounters in the EHR
// (hl7/fhir.Lookup over the configured FHIR R4 server).
type PatientLookup interface {
	Patient(ctx context.Context, authority, mrn string) (*fhir.PatientMatch, error)
}

// GetIdentityHistory returns how a case's patient identity came to be.
func (s *caseService) GetIdentityHistory(ctx context.Context, req *pb.GetIdentityHistoryRequest) (*pb.GetIdentityHistoryResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	recs, cur, err := s.h.store.IdentityHistory(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.GetIdentityHistoryResponse{Current: detailsOut(charting.Details{Patient: cur}).GetPatient()}
	for _, r := range recs {
		out.Records = append(out.Records, &pb.IdentityRecord{Source: r.Source, LedgerSequence: r.Seq, DetailsVersion: r.DetailsVersion,
			Mrn: r.MRN, AssigningAuthority: r.AssigningAuthority, FamilyName: r.FamilyName, GivenName: r.GivenName, BirthDate: r.BirthDate,
			Reason: r.Reason, Actor: r.Actor, RecordedAt: timestamppb.New(r.RecordedAt)})
	}
	return out, nil
}

// LookupPatient asks the EHR's FHIR server for a patient by MRN.
func (s *caseService) LookupPatient(ctx context.Context, req *pb.LookupPatientRequest) (*pb.LookupPatientResponse, error) {
	var p parser
	p.require("site", req.GetSite() != "")
	if req.GetMrn() == "" {
		p.v.Add("mrn", "required")
	} else {
		charting.CheckText(&p.v, "mrn", req.GetMrn(), 64, false)
	}
	charting.CheckText(&p.v, "assigning_authority", req.GetAssigningAuthority(), 64, false)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	if s.lookup == nil {
		return nil, preconditionStatus("this server has no EHR to ask: start perfusiond with --fhir-lookup-url (or --fhir-base-url)")
	}
	m, err := s.lookup.Patient(ctx, req.GetAssigningAuthority(), req.GetMrn())
	switch {
	case errors.Is(err, fhir.ErrPatientNotFound):
		return nil, status.Error(codes.NotFound, "the EHR has no patient with this MRN")
	case errors.Is(err, fhir.ErrPatientAmbiguous):
		return nil, preconditionStatus("the EHR has several patients with this MRN: type the case's patient by hand and tell the registration desk")
	case errors.Is(err, fhir.ErrUnknownAuthority):
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "assigning_authority",
			Description: "no FHIR identifier system is configured for it (perfusiond --fhir-mrn-systems)"}}})
	case errors.Is(err, fhir.ErrLookupUnavailable):
		s.h.log.Warn("patient lookup failed", "err", err.Error())
		return nil, status.Error(codes.Unavailable, "the EHR did not answer; try again or type the patient")
	case err != nil:
		return nil, s.h.fail(err)
	}
	out := &pb.LookupPatientResponse{Patient: detailsOut(charting.Details{Patient: m.Patient}).GetPatient(), FhirPatientId: m.FHIRID}
	for _, e := range m.Encounters {
		pe := &pb.Encounter{EncounterId: e.ID, Status: e.Status, ClassCode: e.Class, Location: e.Location}
		if !e.Start.IsZero() {
			pe.Start = timestamppb.New(e.Start)
		}
		if !e.End.IsZero() {
			pe.End = timestamppb.New(e.End)
		}
		out.Encounters = append(out.Encounters, pe)
	}
	return out, nil
}

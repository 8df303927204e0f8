package server_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// TestLifecycleMisuse: writes the case's state does not allow get
// FailedPrecondition with a PreconditionFailure detail, and store nothing.
func TestLifecycleMisuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		e := f.e
		ctx := as(perfusionist)
		now := time.Now()

		// inProgress has an entry that was corrected, and a void.
		inProgress := f.caseID
		_, err := e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: inProgress, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID,
			Reason: "typo", Replacement: noteEntry(inProgress, "baseline fixed", now.Add(-time.Minute))})
		if err != nil {
			t.Fatalf("correct: %v", err)
		}
		toVoid := e.recordEntry(noteEntry(inProgress, "to void", now.Add(-time.Minute))).GetEntry().GetEntryId()
		voided, err := e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: inProgress, EntryId: uuid.NewString(), SupersedesEntryId: toVoid, Reason: "dup", Void: true})
		if err != nil {
			t.Fatalf("void: %v", err)
		}
		closed := e.createCase("OR-7").GetCaseId()
		closedEntry := e.recordEntry(noteEntry(closed, "n", now.Add(-time.Minute))).GetEntry().GetEntryId()
		if _, err := e.cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: closed}); err != nil {
			t.Fatalf("close: %v", err)
		}
		signed := e.createCase("OR-8").GetCaseId()
		signedEntry := e.recordEntry(noteEntry(signed, "n", now.Add(-time.Minute))).GetEntry().GetEntryId()
		if _, err := e.cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: signed}); err != nil {
			t.Fatalf("close: %v", err)
		}
		if _, err := e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: signed, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"}); err != nil {
			t.Fatalf("sign: %v", err)
		}

		sign := func(id string) func() error {
			return func() error {
				_, err := e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"})
				return err
			}
		}
		entry := func(id string) func() error {
			return func() error {
				_, err := e.charting.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: noteEntry(id, "late", now)})
				return err
			}
		}
		samples := func(id string) func() error {
			return func() error { return f.streamErr(openMsg(id, "hlm-1"), batchMsg(flowBatch("hlm-1", 1, f.t0, 3))) }
		}
		addendum := func(id string) func() error {
			return func() error {
				_, err := e.cases.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: id, AddendumId: uuid.NewString(), Text: "t", Reason: "r"})
				return err
			}
		}
		correct := func(id, target string) func() error {
			return func() error {
				_, err := e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: id, EntryId: uuid.NewString(), SupersedesEntryId: target, Reason: "r",
					Replacement: noteEntry(id, "again", now.Add(-time.Minute))})
				return err
			}
		}
		tests := []struct {
			name   string
			caseID string
			call   func() error
		}{
			{"entry on closed case", closed, entry(closed)},
			{"entry on signed case", signed, entry(signed)},
			{"samples on closed case", closed, samples(closed)},
			{"samples on signed case", signed, samples(signed)},
			{"sign before close", inProgress, sign(inProgress)},
			{"close a closed case", closed, func() error {
				_, err := e.cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: closed})
				return err
			}},
			{"update details after sign", signed, func() error {
				_, err := e.cases.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: signed, ExpectedDetailsVersion: 1, Details: sampleDetails(), Reason: "r"})
				return err
			}},
			{"addendum before sign", closed, addendum(closed)},
			{"addendum while in progress", inProgress, addendum(inProgress)},
			{"correction of a superseded entry", inProgress, correct(inProgress, f.entryID)},
			{"correction of a void", inProgress, func() error {
				_, err := e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: inProgress, EntryId: uuid.NewString(),
					SupersedesEntryId: voided.GetEntry().GetEntryId(), Reason: "r", Void: true})
				return err
			}},
			{"correction of an entry of another case", inProgress, correct(inProgress, closedEntry)},
			{"correction on a signed case", signed, correct(signed, signedEntry)},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := f.snapshotOf(t, tc.caseID)
				st := wantCode(t, tc.name, tc.call(), codes.FailedPrecondition)
				found := false
				for _, d := range st.Details() {
					if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.GetViolations()) > 0 && pf.GetViolations()[0].GetDescription() != "" {
						found = true
					}
				}
				if !found || st.Message() == "" {
					t.Fatalf("%s: status %q carries no PreconditionFailure", tc.name, st.Message())
				}
				f.assertUnchanged(t, before)
			})
		}

		// A signature on a head the signer has not seen is Aborted.
		before := f.snapshotOf(t, signed)
		stale := &pb.LedgerHead{Sequence: 2, Hash: e.auditTrail(signed)[1].GetHash()}
		_, err = e.cases.SignCase(as(reviewer), &pb.SignCaseRequest{CaseId: signed, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_REVIEWED,
			SignerDisplayName: "R", ExpectedLedgerHead: stale})
		wantCode(t, "sign a stale head", err, codes.Aborted)
		f.assertUnchanged(t, before)
	})
}

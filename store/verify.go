package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// Verification is the outcome of VerifyRecord.
type Verification struct {
	charting.VerifyResult
	EntriesVerified       int64
	SampleBatchesVerified int64
	SamplesVerified       int64
}

// OK reports whether everything verified.
func (v *Verification) OK() bool { return v.Bad == nil }

// VerifyRecord re-reads every stored datum of the case, re-encodes it
// canonically and re-computes the chain. It trusts no stored hash but the
// ones it compares against: content digests are always recomputed.
//
// Every read is made in one snapshot of the database: a case written while
// it is verified must not show a link without its content, or content
// without its link, which would be reported as tampering that did not
// happen.
func (s *Store) VerifyRecord(ctx context.Context, caseID uuid.UUID) (*Verification, error) {
	var out *Verification
	err := s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		var err error
		out, err = verifyRecord(ctx, r, caseID, s.cat.Resolution)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verify record: %w", err)
	}
	return out, nil
}

// verifyRecord verifies a case through r, which must read one snapshot.
func verifyRecord(ctx context.Context, r Reader, caseID uuid.UUID, resolution func(string) float64) (*Verification, error) {
	c, err := r.GetCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	links, err := r.Links(ctx, caseID, 0, 0)
	if err != nil {
		return nil, err
	}
	out := new(Verification)
	runs, err := newRunCheck(ctx, r, caseID, resolution)
	if err != nil {
		return nil, err
	}
	content, err := recordContent(ctx, r, c, out, runs)
	if err != nil {
		return nil, err
	}
	out.VerifyResult = charting.Verify(charting.VerifyInput{Status: c.Status, Head: c.Head, Signatures: c.Signatures, Links: links, Content: content})
	if bad := runs.finish(); bad != nil && out.Bad == nil {
		// The batches verified but a trend chunk built from them differs:
		// what a trend shows was altered. Named by the run's first batch.
		out.Bad = badRun(links, bad)
	}
	return out, nil
}

// badRun reports a run that does not match its batches at the link of the
// run's first batch.
func badRun(links []charting.Link, run *storedRun) *charting.BadLink {
	ref := charting.SampleRef(run.key.SourceID, run.from)
	bad := &charting.BadLink{Kind: charting.LinkSamples, Ref: ref, Problem: charting.ProblemContentAltered, Detail: run.detail}
	for _, l := range links {
		if l.Kind == charting.LinkSamples && l.Ref == ref {
			bad.Seq = l.Seq
			break
		}
	}
	return bad
}

// recordContent gathers the digest of every stored datum by content key.
// Batches a chunk run covers are handed to runs, which rebuilds the run.
func recordContent(ctx context.Context, r Reader, c *charting.Case, out *Verification, runs *runCheck) (map[string]charting.Content, error) {
	content := make(map[string]charting.Content)
	put := func(kind charting.LinkKind, ref string, d charting.Hash, bad error) {
		content[charting.ContentKey(kind, ref)] = charting.Content{Kind: kind, Ref: ref, Digest: d, Unreadable: bad}
	}
	put(charting.LinkCaseCreated, "", charting.DigestCaseHeader(charting.HeaderOf(c)), nil)
	if !c.ClosedAt.IsZero() {
		put(charting.LinkCaseClosed, "", charting.DigestClose(c.ID, c.ClosedAt, c.ClosedBy), nil)
	}
	versions, err := r.DetailsVersions(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	for _, d := range versions {
		put(charting.LinkDetails, strconv.FormatInt(d.Version, 10), charting.DigestDetails(c.ID, d), nil)
	}
	entries, err := r.Entries(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		put(charting.LinkKindOf(&e), e.ID.String(), charting.DigestEntry(e), nil)
		out.EntriesVerified++
	}
	for _, sig := range c.Signatures {
		put(charting.LinkSignature, strconv.FormatInt(sig.Number, 10), charting.DigestSignature(sig), nil)
	}
	err = r.ScanSampleBatches(ctx, c.ID, SampleFilter{}, func(row *SampleBatchRow) error {
		ref := charting.SampleRef(row.SourceID, row.Seq)
		series, err := samplecodec.DecodeBlock(row.Block)
		runs.add(row.SourceID, row.Seq, series, err)
		if err != nil {
			put(charting.LinkSamples, ref, charting.Hash{}, err)
			return nil
		}
		put(charting.LinkSamples, ref, charting.SampleDigest(row.SourceID, row.Seq, series), nil)
		out.SampleBatchesVerified++
		for _, sr := range series {
			out.SamplesVerified += int64(sr.Len())
		}
		return nil
	})
	return content, err
}

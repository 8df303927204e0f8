package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store/checkpoint"
)

// Verification is the outcome of VerifyRecord.
type Verification struct {
	charting.VerifyResult
	EntriesVerified       int64
	SampleBatchesVerified int64
	SamplesVerified       int64
	// CheckpointsVerified counts the checkpoints the chain was checked
	// against (AgainstCheckpoints).
	CheckpointsVerified int64
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
func (s *Store) VerifyRecord(ctx context.Context, caseID uuid.UUID, opts ...VerifyOption) (*Verification, error) {
	var o verifyOptions
	for _, f := range opts {
		f(&o)
	}
	if o.againstCheckpoints && s.anchor == nil {
		return nil, fmt.Errorf("verify record: %w", charting.Preconditionf("this server keeps no checkpoint log"))
	}
	var out *Verification
	var links []charting.Link
	err := s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		var err error
		out, links, err = verifyRecord(ctx, r, caseID, s.cat.Resolution)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verify record: %w", err)
	}
	if o.againstCheckpoints {
		// Read after the snapshot: a checkpoint is written after its
		// write commits, so every one read now is of a head the snapshot
		// holds, unless the chain lost it.
		cps, err := s.anchor.Checkpoints(ctx, caseID)
		if err != nil {
			return nil, fmt.Errorf("verify record: %w", err)
		}
		out.CheckpointsVerified = int64(len(cps))
		// A cut or rewritten tail can verify on its own; against an anchor
		// it is named even when the chain also reports a later problem.
		if bad := checkpoint.Check(links, cps); bad != nil && (out.Bad == nil || out.Bad.Seq == 0 || bad.Seq <= out.Bad.Seq) {
			out.Bad = bad
		}
	}
	return out, nil
}

// verifyRecord verifies a case through r, which must read one snapshot.
func verifyRecord(ctx context.Context, r Reader, caseID uuid.UUID, resolution func(string) float64) (*Verification, []charting.Link, error) {
	c, err := r.GetCase(ctx, caseID)
	if err != nil {
		return nil, nil, err
	}
	links, err := r.Links(ctx, caseID, 0, 0)
	if err != nil {
		return nil, nil, err
	}
	out := new(Verification)
	runs, err := newRunCheck(ctx, r, caseID, resolution)
	if err != nil {
		return nil, nil, err
	}
	stored := make(map[string]batchMeta)
	content, err := recordContent(ctx, r, c, out, runs, stored)
	if err != nil {
		return nil, nil, err
	}
	out.VerifyResult = charting.Verify(charting.VerifyInput{Status: c.Status, Head: c.Head, Signatures: c.Signatures, Links: links, Content: content})
	// Columns outside the hash that decide what a query or export returns
	// are recomputed from what the hash covers and compared: a batch's time
	// range and count (range scans select batches by them), its recorded
	// time and actor, and the case state's start time and current details
	// version. The earliest such problem wins over a later link's.
	if bad := stateBad(c, links, stored); bad != nil && (out.Bad == nil || (out.Bad.Seq > 0 && bad.Seq > 0 && bad.Seq < out.Bad.Seq)) {
		out.Bad = bad
	}
	if out.Bad == nil {
		marks, err := r.SourceWatermarks(ctx, caseID)
		if err != nil {
			return nil, nil, err
		}
		out.Bad = watermarkBad(marks, stored)
	}
	if bad := runs.finish(); bad != nil && out.Bad == nil {
		// The batches verified but a trend chunk built from them differs:
		// what a trend shows was altered. Named by the run's first batch.
		out.Bad = badRun(links, bad)
	}
	return out, links, nil
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
func recordContent(ctx context.Context, r Reader, c *charting.Case, out *Verification, runs *runCheck, stored map[string]batchMeta) (map[string]charting.Content, error) {
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
	ids, err := r.IdentityReconciliations(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	for _, x := range ids {
		put(charting.LinkIdentity, strconv.FormatInt(x.Seq, 10), charting.DigestIdentity(x), nil)
	}
	for _, sig := range c.Signatures {
		put(charting.LinkSignature, strconv.FormatInt(sig.Number, 10), charting.DigestSignature(sig), nil)
	}
	err = r.ScanSampleBatches(ctx, c.ID, SampleFilter{}, func(row *SampleBatchRow) error {
		ref := charting.SampleRef(row.SourceID, row.Seq)
		series, err := samplecodec.DecodeBlock(row.Block)
		runs.add(row.SourceID, row.Seq, series, err)
		m := batchMeta{source: row.SourceID, seq: row.Seq, recordedAt: row.RecordedAt, actor: row.Actor}
		if err != nil {
			stored[ref] = m
			put(charting.LinkSamples, ref, charting.Hash{}, err)
			return nil
		}
		m.bad = summaryBad(row, series)
		stored[ref] = m
		put(charting.LinkSamples, ref, charting.SampleDigest(row.SourceID, row.Seq, series), nil)
		out.SampleBatchesVerified++
		for _, sr := range series {
			out.SamplesVerified += int64(sr.Len())
		}
		return nil
	})
	return content, err
}

// batchMeta is what a sample batch row stores beside its block, to be
// compared with its link and its decoded samples.
type batchMeta struct {
	source     string
	seq        int64
	recordedAt time.Time
	actor      string
	bad        string // why the row's summary columns are not its samples'
}

// summaryBad compares a batch row's min_time_ms, max_time_ms and
// sample_count with its decoded samples. They are outside the hash but
// select which batches a time-range query and an export read: a batch moved
// out of a window would hide its samples while the chain still verified.
func summaryBad(row *SampleBatchRow, series []charting.Series) string {
	b := charting.SampleBatch{Series: series}
	lo, hi := b.TimeRange()
	n := b.SampleCount()
	if n == 0 {
		// An empty block has no range; the store never writes one, and a
		// row claiming samples it does not hold is altered all the same.
		if row.SampleCount != 0 {
			return fmt.Sprintf("the batch's sample_count is %d but its block holds no sample", row.SampleCount)
		}
		return ""
	}
	if row.MinTimeMs != lo || row.MaxTimeMs != hi || row.SampleCount != n {
		return fmt.Sprintf("the batch's stored time range [%d, %d] and count %d are not its samples' [%d, %d] and %d",
			row.MinTimeMs, row.MaxTimeMs, row.SampleCount, lo, hi, n)
	}
	return ""
}

// stateBad checks the stored columns the ledger does not hash but implies:
// each batch's summary, recorded_at and actor (its link's), the case's
// started_at (the time of its first charted datum, store.markStarted) and
// details_version (its latest details link). It returns the earliest
// problem, nil when there is none. Missing content is charting.Verify's to
// report.
func stateBad(c *charting.Case, links []charting.Link, stored map[string]batchMeta) *charting.BadLink {
	var startedAt time.Time
	var startLink *charting.Link
	planned := true
	var details int64
	var detailsLink *charting.Link
	for i := range links {
		l := &links[i]
		switch l.Kind {
		case charting.LinkSamples:
			m, ok := stored[l.Ref]
			if !ok {
				break
			}
			if m.bad != "" {
				return &charting.BadLink{Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Problem: charting.ProblemContentAltered, Detail: m.bad}
			}
			if !charting.NormTime(m.recordedAt).Equal(charting.NormTime(l.RecordedAt)) || m.actor != l.Actor {
				return &charting.BadLink{Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Problem: charting.ProblemContentAltered,
					Detail: "the batch's stored recorded_at or actor is not its link's"}
			}
		case charting.LinkDetails:
			details++
			detailsLink = l
		}
		switch l.Kind {
		case charting.LinkEntry, charting.LinkCorrection, charting.LinkSamples:
			if planned {
				planned, startedAt, startLink = false, l.RecordedAt, l
			}
		case charting.LinkCaseClosed, charting.LinkSignature:
			planned = false
		}
	}
	if !charting.NormTime(startedAt).Equal(charting.NormTime(c.StartedAt)) {
		bad := &charting.BadLink{Seq: c.Head.Seq, Problem: charting.ProblemHeadMismatch,
			Detail: "the case's started_at is not the recorded time of its first charted datum"}
		if startLink != nil {
			bad.Seq, bad.Kind, bad.Ref = startLink.Seq, startLink.Kind, startLink.Ref
		}
		return bad
	}
	if c.DetailsVersion != details {
		bad := &charting.BadLink{Seq: c.Head.Seq, Problem: charting.ProblemHeadMismatch,
			Detail: fmt.Sprintf("the case's current details version is %d but its ledger records %d", c.DetailsVersion, details)}
		if detailsLink != nil {
			bad.Seq, bad.Kind, bad.Ref = detailsLink.Seq, detailsLink.Kind, detailsLink.Ref
		}
		return bad
	}
	return nil
}

// watermarkBad compares each source's stored resume watermark with the one
// its stored batches imply (the highest w with 1..w all stored). The
// watermark is derived, but a device resumes after it: one raised behind the
// service's back tells a gateway that batches it never delivered are safe.
func watermarkBad(marks map[string]int64, stored map[string]batchMeta) *charting.BadLink {
	seqs := make(map[string]map[int64]bool)
	for _, m := range stored {
		if seqs[m.source] == nil {
			seqs[m.source] = make(map[int64]bool)
		}
		seqs[m.source][m.seq] = true
	}
	sources := make([]string, 0, len(seqs)+len(marks))
	for src := range seqs {
		sources = append(sources, src)
	}
	for src := range marks {
		if seqs[src] == nil {
			sources = append(sources, src)
		}
	}
	slices.Sort(sources)
	for _, src := range sources {
		var w int64
		for seqs[src][w+1] {
			w++
		}
		if marks[src] != w {
			return &charting.BadLink{Kind: charting.LinkSamples, Ref: charting.SampleRef(src, marks[src]), Problem: charting.ProblemContentAltered,
				Detail: fmt.Sprintf("the source's resume watermark is %d but its stored batches run 1..%d", marks[src], w)}
		}
	}
	return nil
}

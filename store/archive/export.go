package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// linkPage is how many ledger links Export reads at a time.
const linkPage = 1000

// Export writes case caseID, as stored in r, to w as an archive (see the
// package documentation for the format). It copies what is stored, as it is
// stored: it does not verify the record, so a record damaged at the source
// is exported damaged and Import refuses it.
//
// Export streams: sample batches go from r to w one at a time, ledger links
// a page at a time; only the case's details versions and entries are held in
// memory. The output is deterministic: the same record exported from
// SQLite or PostgreSQL gives the same bytes (provided both order sample
// batches that start in the same millisecond alike: by source id, which
// PostgreSQL compares in the database's collation).
//
// For a case that may be written while it is exported, pass a Reader that
// reads one snapshot (store.Backend's Snapshot). With any other Reader,
// Export re-reads the case's head at the end and fails with an error
// wrapping charting.ErrStale if the case changed meanwhile. On any error
// what was written to w is not a valid archive (it lacks the end line) and
// must be discarded.
func Export(ctx context.Context, r store.Reader, caseID uuid.UUID, w io.Writer) error {
	if err := export(ctx, r, caseID, w); err != nil {
		return fmt.Errorf("export case archive: %w", err)
	}
	return nil
}

func export(ctx context.Context, r store.Reader, caseID uuid.UUID, w io.Writer) error {
	c, err := r.GetCase(ctx, caseID)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw) // one value per line, "\n"-terminated
	enc.SetEscapeHTML(false)
	var n endCounts

	if err := enc.Encode(archiveLine{Type: typeArchive, Format: Format, Version: Version, CaseID: c.ID}); err != nil {
		return err
	}
	if err := enc.Encode(caseLineOf(utcCase(c))); err != nil {
		return err
	}
	versions, err := r.DetailsVersions(ctx, caseID)
	if err != nil {
		return err
	}
	for _, d := range versions {
		d.RecordedAt = utc(d.RecordedAt)
		if err := enc.Encode(detailsLine{Type: typeDetails, DetailsVersion: d}); err != nil {
			return err
		}
		n.Details++
	}
	entries, err := r.Entries(ctx, caseID)
	if err != nil {
		return err
	}
	for _, e := range entries {
		e.SupersededBy = uuid.Nil // a view, not part of the entry
		e.OccurredAt, e.RecordedAt = utc(e.OccurredAt), utc(e.RecordedAt)
		if m := e.Detail.ArtifactMark; m != nil {
			mm := *m
			mm.Start, mm.End = utc(mm.Start), utc(mm.End)
			e.Detail.ArtifactMark = &mm
		}
		if err := enc.Encode(entryLine{Type: typeEntry, Entry: e}); err != nil {
			return err
		}
		n.Entries++
	}
	err = r.ScanSampleBatches(ctx, caseID, store.SampleFilter{}, func(row *store.SampleBatchRow) error {
		n.SampleBatches++
		n.Samples += int64(row.SampleCount)
		return enc.Encode(samplesLine{Type: typeSamples, SourceID: row.SourceID, Seq: row.Seq,
			RecordedAt: utc(row.RecordedAt), Actor: row.Actor, MinTimeMs: row.MinTimeMs, MaxTimeMs: row.MaxTimeMs,
			SampleCount: row.SampleCount, Block: row.Block})
	})
	if err != nil {
		return err
	}
	for _, s := range c.Signatures {
		s.SignedAt = utc(s.SignedAt)
		if err := enc.Encode(signatureLineOf(&s)); err != nil {
			return err
		}
		n.Signatures++
	}
	ids, err := r.IdentityReconciliations(ctx, caseID)
	if err != nil {
		return err
	}
	for _, x := range ids {
		x.RecordedAt = utc(x.RecordedAt)
		if err := enc.Encode(identityLine{Type: typeIdentity, IdentityReconciliation: x}); err != nil {
			return err
		}
		n.Identities++
	}
	for after := int64(0); ; {
		links, err := r.Links(ctx, caseID, after, linkPage)
		if err != nil {
			return err
		}
		for i := range links {
			links[i].RecordedAt = utc(links[i].RecordedAt)
			if err := enc.Encode(linkLineOf(&links[i])); err != nil {
				return err
			}
			n.Links++
			after = links[i].Seq
		}
		if len(links) < linkPage {
			break
		}
	}
	// Every write of a record moves its head, so an unchanged head means
	// every read above saw the same record.
	again, err := r.GetCase(ctx, caseID)
	if err != nil {
		return err
	}
	if again.Head != c.Head {
		return fmt.Errorf("case changed while it was exported (head %d, then %d); export it from a snapshot: %w",
			c.Head.Seq, again.Head.Seq, charting.ErrStale)
	}
	if err := enc.Encode(endLine{Type: typeEnd, endCounts: n, HeadSeq: c.Head.Seq, HeadHash: hexHash(c.Head.Hash)}); err != nil {
		return err
	}
	return bw.Flush()
}

// utc returns t in UTC. Stored times are instants; the location a backend
// reads them into is not part of the record, and the archive writes UTC.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func utcCase(c *charting.Case) *charting.Case {
	cc := *c
	cc.ScheduledStart, cc.CreatedAt = utc(c.ScheduledStart), utc(c.CreatedAt)
	cc.StartedAt, cc.ClosedAt = utc(c.StartedAt), utc(c.ClosedAt)
	return &cc
}

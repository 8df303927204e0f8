package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store"
)

// maxLine bounds one archive line. The largest legitimate line is a sample
// batch at the charting limits (about 200 KiB of block, a third more in
// base64); the bound keeps a hostile archive from making Import buffer an
// arbitrarily long line.
const maxLine = 16 << 20

// Import reads an archive from r and writes its case into b exactly as
// archived — the same header, state, details versions, entries, sample
// blocks, signatures and ledger links, recorded-at times, actors and hashes.
// It never re-chains or re-signs. It returns the case's id.
//
// Before writing anything Import verifies the archive against its own
// ledger (charting.Verify over digests recomputed from the archived content,
// as store.Store.VerifyRecord does over stored content) and checks the
// stored values the ledger does not cover against what they derive from. An
// archive that was altered, cut short or is otherwise incomplete is refused
// with an error matching ErrInvalid: a *VerificationError naming the first
// bad link and the problem, or a *FormatError naming the line. Nothing is
// stored then.
//
// The case is written in one ReadWrite transaction. Inside it Import reads
// back the case row, every entry and every sample block it wrote and fails
// (rolling back) if the backend did not store them as archived. If the case
// already exists with the same ledger head, Import stores nothing and
// succeeds (a re-import is a no-op); with a different head it fails with an
// error wrapping charting.ErrConflict.
//
// Because ReadWrite may call its function more than once, the archive is
// read completely before the transaction starts. Everything but the sample
// blocks is kept in memory — the same order of memory as VerifyRecord needs
// (a few hundred bytes per ledger link) — while sample-batch lines, the bulk
// of a case, are spooled to a temporary file in os.TempDir (created with
// owner-only permissions and unlinked at once where the platform allows,
// else removed when Import returns). The transaction re-reads the
// spool and checks its SHA-256 against what was verified before committing.
func Import(ctx context.Context, b store.Backend, r io.Reader) (caseID uuid.UUID, err error) {
	res, err := ImportCase(ctx, b, r, ImportOptions{})
	return res.CaseID, err
}

// ImportOptions relax what Import refuses.
type ImportOptions struct {
	// AcceptNonconformingText imports a case whose text breaks the
	// record's text rules (charting.TextProblem) exactly as archived,
	// where the target store can hold it. Without it such a case is
	// refused with a *TextError naming every field. The text is never
	// rewritten: it is covered by the case's hash chain and signatures.
	AcceptNonconformingText bool
}

// Imported says what ImportCase did.
type Imported struct {
	CaseID uuid.UUID
	// Head is the case's ledger head, in the archive and now in the store.
	Head charting.Head
	// AlreadyPresent: the store held the case with the same ledger head,
	// so the same record, and nothing was written.
	AlreadyPresent bool
	// What the archive holds, all of it written unless AlreadyPresent.
	Links, Entries, SampleBatches, Samples, Signatures int64
}

// ImportCase is Import with options, telling whether the case was written
// or already present (a re-import stores nothing), so a person is not told
// that a no-op imported anything.
func ImportCase(ctx context.Context, b store.Backend, r io.Reader, o ImportOptions) (Imported, error) {
	a := &parsed{}
	defer a.close()
	if err := a.read(ctx, r); err != nil {
		return Imported{}, fmt.Errorf("import case archive: %w", err)
	}
	if err := a.verify(); err != nil {
		return Imported{}, fmt.Errorf("import case archive: %w", err)
	}
	if v := a.textViolations(); len(v) > 0 && !o.AcceptNonconformingText {
		return Imported{}, fmt.Errorf("import case archive: %w", &TextError{CaseID: a.c.ID, Violations: v})
	}
	var present bool
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		var err error
		present, err = a.write(ctx, tx) // set again by every attempt
		return err
	})
	if err != nil {
		return Imported{}, fmt.Errorf("import case archive %s: %w", a.c.ID, err)
	}
	n := a.counts
	return Imported{CaseID: a.c.ID, Head: a.c.Head, AlreadyPresent: present, Links: n.Links, Entries: n.Entries,
		SampleBatches: n.SampleBatches, Samples: n.Samples, Signatures: n.Signatures}, nil
}

// parsed is an archive read and checked line by line, sample blocks aside.
type parsed struct {
	c       charting.Case // header and state, with Signatures
	details []charting.DetailsVersion
	entries []charting.Entry
	ids     []charting.IdentityReconciliation
	links   []charting.Link
	// content holds the digest of every archived datum by content key.
	content map[string]charting.Content
	// batches holds what each sample batch's link must agree with.
	batches map[string]batchMeta
	// seqs holds every batch sequence of each source.
	seqs   map[string][]int64
	counts endCounts
	end    *endLine
	spool  *spool
}

type batchMeta struct {
	recordedAt time.Time
	actor      string
	// bad says how the batch's summary disagrees with its block; "" when
	// it agrees or the block does not decode (the ledger check reports that).
	bad string
}

func (a *parsed) close() {
	if a.spool != nil {
		a.spool.close()
	}
}

func (a *parsed) put(kind charting.LinkKind, ref string, d charting.Hash, bad error) {
	a.content[charting.ContentKey(kind, ref)] = charting.Content{Kind: kind, Ref: ref, Digest: d, Unreadable: bad}
}

// read parses the whole archive, spooling sample lines.
func (a *parsed) read(ctx context.Context, r io.Reader) error {
	a.content = make(map[string]charting.Content)
	a.batches = make(map[string]batchMeta)
	a.seqs = make(map[string][]int64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	rank := -1
	superseded := make(map[uuid.UUID]bool) // entries so far → superseded yet
	no := 0
	for sc.Scan() {
		no++
		if no%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return &FormatError{Line: no, Msg: fmt.Sprintf(format, args...)}
		}
		var peek struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &peek); err != nil {
			if rank < 0 {
				return bad("not a perfusion case archive: %s", jsonProblem(err))
			}
			return bad("%s", jsonProblem(err))
		}
		lr, ok := lineRank[peek.Type]
		switch {
		case rank < 0 && peek.Type != typeArchive:
			return bad("not a perfusion case archive: the first line is not an archive line")
		case !ok:
			return bad("unknown line type %q", short(peek.Type))
		case rank == lineRank[typeEnd]:
			return bad("data after the end line")
		case lr < rank || (lr == rank && lr <= lineRank[typeCase]):
			return bad("%q line after a %q line: out of order", peek.Type, typeOfRank(rank))
		case lr > lineRank[typeCase] && rank < lineRank[typeCase]:
			return bad("%q line before the case line", peek.Type)
		}
		rank = lr
		var err error
		switch peek.Type {
		case typeArchive:
			err = a.readArchive(line)
		case typeCase:
			err = a.readCase(line)
		case typeDetails:
			err = a.readDetails(line)
		case typeEntry:
			err = a.readEntry(line, superseded)
		case typeSamples:
			err = a.readSamples(line)
		case typeSignature:
			err = a.readSignature(line)
		case typeIdentity:
			err = a.readIdentity(line)
		case typeLink:
			err = a.readLink(line)
		case typeEnd:
			var e endLine
			if err = decodeLine(line, &e); err == nil {
				a.end = &e
			}
		}
		if err != nil {
			return bad("%s line: %v", peek.Type, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &FormatError{Line: no + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return fmt.Errorf("read: %w", err)
	}
	if rank < 0 {
		return &FormatError{Msg: "empty input: not a perfusion case archive"}
	}
	if a.end == nil {
		return &FormatError{Msg: "incomplete: the archive has no end line (cut short?)"}
	}
	if a.spool != nil {
		return a.spool.finish()
	}
	return nil
}

// short shortens text quoted from an archive in an error.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func typeOfRank(r int) string {
	for t, rr := range lineRank {
		if rr == r {
			return t
		}
	}
	return "?"
}

func (a *parsed) readArchive(line []byte) error {
	var l archiveLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	switch {
	case l.Format != Format:
		return fmt.Errorf("format is not %q", Format)
	case l.Version != Version:
		return fmt.Errorf("version %d is not supported (this reader knows version %d)", l.Version, Version)
	case l.CaseID == uuid.Nil:
		return errors.New("case_id is required")
	}
	a.c.ID = l.CaseID
	return nil
}

func (a *parsed) readCase(line []byte) error {
	var l caseLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	if l.CaseID != a.c.ID {
		return errors.New("case_id is not the archive's case")
	}
	c := l.toCase()
	if err := utcTimes(&c.ScheduledStart, &c.CreatedAt, &c.StartedAt, &c.ClosedAt); err != nil {
		return err
	}
	a.c = c
	a.put(charting.LinkCaseCreated, "", charting.DigestCaseHeader(charting.HeaderOf(&c)), nil)
	if !c.ClosedAt.IsZero() {
		a.put(charting.LinkCaseClosed, "", charting.DigestClose(c.ID, c.ClosedAt, c.ClosedBy), nil)
	}
	return nil
}

func (a *parsed) readDetails(line []byte) error {
	var l detailsLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	d := l.DetailsVersion
	if want := int64(len(a.details)) + 1; d.Version != want {
		return fmt.Errorf("version %d where version %d was expected", d.Version, want)
	}
	if err := utcTimes(&d.RecordedAt); err != nil {
		return err
	}
	a.details = append(a.details, d)
	a.counts.Details++
	a.put(charting.LinkDetails, strconv.FormatInt(d.Version, 10), charting.DigestDetails(a.c.ID, d), nil)
	return nil
}

func (a *parsed) readEntry(line []byte, superseded map[uuid.UUID]bool) error {
	var l entryLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	e := l.Entry
	_, dup := superseded[e.ID]
	switch by, seen := superseded[e.Supersedes]; {
	case e.CaseID != a.c.ID:
		return errors.New("case_id is not the archive's case")
	case e.ID == uuid.Nil:
		return errors.New("entry_id is required")
	case dup:
		return fmt.Errorf("entry %s appears twice", e.ID)
	case e.Supersedes != uuid.Nil && !seen:
		return fmt.Errorf("entry %s corrects an entry that does not precede it", e.ID)
	case e.Supersedes != uuid.Nil && by:
		return fmt.Errorf("entry %s corrects an entry that was already corrected", e.ID)
	}
	times := []*time.Time{&e.OccurredAt, &e.RecordedAt}
	if m := e.Detail.ArtifactMark; m != nil {
		times = append(times, &m.Start, &m.End)
	}
	if err := utcTimes(times...); err != nil {
		return err
	}
	if e.Supersedes != uuid.Nil {
		superseded[e.Supersedes] = true
	}
	superseded[e.ID] = false
	a.entries = append(a.entries, e)
	a.counts.Entries++
	a.put(charting.LinkKindOf(&e), e.ID.String(), charting.DigestEntry(e), nil)
	return nil
}

func (a *parsed) readSamples(line []byte) error {
	l, err := decodeSamples(line)
	if err != nil {
		return err
	}
	ref := charting.SampleRef(l.SourceID, l.Seq)
	if _, dup := a.batches[ref]; dup {
		return fmt.Errorf("batch %s appears twice", ref)
	}
	meta := batchMeta{recordedAt: l.RecordedAt, actor: l.Actor}
	series, err := samplecodec.DecodeBlock(l.Block)
	if err != nil {
		a.put(charting.LinkSamples, ref, charting.Hash{}, err)
	} else {
		a.put(charting.LinkSamples, ref, charting.SampleDigest(l.SourceID, l.Seq, series), nil)
		b := charting.SampleBatch{Series: series}
		if lo, hi := b.TimeRange(); lo != l.MinTimeMs || hi != l.MaxTimeMs || b.SampleCount() != l.SampleCount {
			meta.bad = "the batch's time range or sample count does not match its samples"
		}
	}
	a.batches[ref] = meta
	a.seqs[l.SourceID] = append(a.seqs[l.SourceID], l.Seq)
	a.counts.SampleBatches++
	a.counts.Samples += int64(l.SampleCount)
	if a.spool == nil {
		if a.spool, err = newSpool(); err != nil {
			return err
		}
	}
	return a.spool.add(line)
}

// decodeSamples decodes and checks a samples line; Import reads each one
// twice, once to verify it and once from the spool to store it.
func decodeSamples(line []byte) (samplesLine, error) {
	var l samplesLine
	if err := decodeLine(line, &l); err != nil {
		return l, err
	}
	switch {
	case l.SourceID == "":
		return l, errors.New("source_id is required")
	case l.Seq < 1:
		return l, errors.New("seq must be at least 1")
	}
	return l, utcTimes(&l.RecordedAt)
}

func (a *parsed) readSignature(line []byte) error {
	var l signatureLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	s := l.toSignature()
	switch n := len(a.c.Signatures); {
	case s.CaseID != a.c.ID:
		return errors.New("case_id is not the archive's case")
	case n > 0 && s.Number <= a.c.Signatures[n-1].Number:
		return fmt.Errorf("signature %d out of order", s.Number)
	}
	if err := utcTimes(&s.SignedAt); err != nil {
		return err
	}
	a.c.Signatures = append(a.c.Signatures, s)
	a.counts.Signatures++
	a.put(charting.LinkSignature, strconv.FormatInt(s.Number, 10), charting.DigestSignature(s), nil)
	return nil
}

func (a *parsed) readIdentity(line []byte) error {
	var l identityLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	x := l.IdentityReconciliation
	switch n := len(a.ids); {
	case x.CaseID != a.c.ID:
		return errors.New("case_id is not the archive's case")
	case x.Seq < 1:
		return errors.New("seq must be at least 1")
	case n > 0 && x.Seq <= a.ids[n-1].Seq:
		return fmt.Errorf("identity reconciliation %d out of order", x.Seq)
	}
	if err := utcTimes(&x.RecordedAt); err != nil {
		return err
	}
	a.ids = append(a.ids, x)
	a.counts.Identities++
	a.put(charting.LinkIdentity, strconv.FormatInt(x.Seq, 10), charting.DigestIdentity(x), nil)
	return nil
}

func (a *parsed) readLink(line []byte) error {
	var l linkLine
	if err := decodeLine(line, &l); err != nil {
		return err
	}
	link := l.toLink(a.c.ID)
	if err := utcTimes(&link.RecordedAt); err != nil {
		return err
	}
	a.links = append(a.links, link)
	a.counts.Links++
	return nil
}

// textViolations applies the record's text rules to every text of the
// archive: header and state, details versions, entries, signatures, ledger
// links and sample sources. Fields are named by where they sit in the
// archive, with the entry id or version that holds them; never the text.
func (a *parsed) textViolations() charting.Violations {
	var v charting.Violations
	c := a.c
	for _, f := range []struct{ name, value string }{{"site", c.Site}, {"room", c.Room}, {"created_by", c.CreatedBy}, {"closed_by", c.ClosedBy}} {
		charting.CheckText(&v, "case."+f.name, f.value, 0, false)
	}
	for _, d := range a.details {
		v = append(v, charting.TextViolations(fmt.Sprintf("details[version %d]", d.Version), d)...)
	}
	for _, e := range a.entries {
		v = append(v, charting.TextViolations("entries["+e.ID.String()+"]", e)...)
	}
	for _, sg := range c.Signatures {
		v = append(v, charting.TextViolations(fmt.Sprintf("signatures[%d]", sg.Number), sg)...)
	}
	for _, x := range a.ids {
		v = append(v, charting.TextViolations(fmt.Sprintf("identity_reconciliations[%d]", x.Seq), x)...)
	}
	for _, l := range a.links {
		v = append(v, charting.TextViolations(fmt.Sprintf("links[%d]", l.Seq), l)...)
	}
	for _, src := range sortedKeys(a.seqs) {
		if p := charting.TextProblem(src, 0, false); p != "" {
			v.Add("samples.source_id", "a source %s", p)
		}
	}
	return v
}

// verify checks the archive against its ledger, then the values the ledger
// does not cover against what they derive from, then the end line.
func (a *parsed) verify() error {
	res := charting.Verify(charting.VerifyInput{Status: a.c.Status, Head: a.c.Head, Signatures: a.c.Signatures,
		Links: a.links, Content: a.content})
	if res.Bad != nil {
		return &VerificationError{Bad: *res.Bad}
	}
	refused := func(l *charting.Link, p charting.Problem, detail string) error {
		return &VerificationError{Bad: charting.BadLink{Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Problem: p, Detail: detail}}
	}
	var startedAt time.Time
	planned, next := true, 0
	for i := range a.links {
		l := &a.links[i]
		switch l.Kind {
		case charting.LinkSamples:
			m := a.batches[l.Ref]
			if !m.recordedAt.Equal(l.RecordedAt) || m.actor != l.Actor {
				return refused(l, charting.ProblemContentAltered, "the batch's recorded_at or actor is not its link's")
			}
			if m.bad != "" {
				return refused(l, charting.ProblemContentAltered, m.bad)
			}
		case charting.LinkEntry, charting.LinkCorrection, charting.LinkAddendum:
			if next >= len(a.entries) || a.entries[next].ID.String() != l.Ref {
				return refused(l, charting.ProblemChainBroken, "the archive's entries are not in the order the ledger recorded them")
			}
			next++
		}
		// The store marks a case started by its first entry, correction or
		// sample batch while planned (store.markStarted).
		switch l.Kind {
		case charting.LinkEntry, charting.LinkCorrection, charting.LinkSamples:
			if planned {
				planned, startedAt = false, l.RecordedAt
			}
		case charting.LinkCaseClosed, charting.LinkSignature:
			planned = false
		}
	}
	headBad := func(detail string) error {
		return &VerificationError{Bad: charting.BadLink{Seq: a.c.Head.Seq, Problem: charting.ProblemHeadMismatch, Detail: detail}}
	}
	if !startedAt.Equal(a.c.StartedAt) {
		return headBad("the case's started_at is not the time of its first charted datum")
	}
	if a.c.DetailsVersion != int64(len(a.details)) {
		return headBad("the case's details version is not its latest details version")
	}
	e := a.end
	if e.endCounts != a.counts {
		return &FormatError{Msg: fmt.Sprintf("the end line's counts %+v are not what the archive holds %+v", e.endCounts, a.counts)}
	}
	if e.HeadSeq != a.c.Head.Seq || charting.Hash(e.HeadHash) != a.c.Head.Hash {
		return &FormatError{Msg: "the end line's head is not the case's head"}
	}
	return nil
}

// write stores the verified archive in one transaction and reports
// whether the identical case was already present (nothing written). It is
// called again when the backend retries the transaction, so it keeps no
// state.
func (a *parsed) write(ctx context.Context, tx store.Tx) (present bool, err error) {
	id := a.c.ID
	existing, err := tx.LockCase(ctx, id)
	switch {
	case err == nil && existing.Head == a.c.Head:
		return true, nil // already imported: the same head hash covers the same record
	case err == nil:
		return false, fmt.Errorf("the case already exists with a different record (ledger head %d %s, archive head %d %s): %w",
			existing.Head.Seq, existing.Head.Hash, a.c.Head.Seq, a.c.Head.Hash, charting.ErrConflict)
	case !errors.Is(err, charting.ErrNotFound):
		return false, err
	}
	return false, a.writeNew(ctx, tx)
}

// writeNew stores the verified archive's case, which the store does not
// hold yet.
func (a *parsed) writeNew(ctx context.Context, tx store.Tx) error {
	id := a.c.ID
	// The case starts empty, like a new case, and takes its archived state
	// once everything its ledger covers is stored.
	c := a.c
	c.Signatures = nil
	initial := charting.Case{ID: id, Kind: c.Kind, Site: c.Site, Room: c.Room, ScheduledStart: c.ScheduledStart,
		CreatedAt: c.CreatedAt, CreatedBy: c.CreatedBy, Status: charting.StatusPlanned}
	if err := tx.InsertCase(ctx, &initial); errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("the case was created while it was imported: %w", charting.ErrConflict)
	} else if err != nil {
		return fmt.Errorf("insert case: %w", err)
	}
	for _, d := range a.details {
		if err := tx.InsertDetails(ctx, id, d); err != nil {
			return fmt.Errorf("insert details version %d: %w", d.Version, err)
		}
	}
	for i := range a.entries {
		e := a.entries[i]
		if err := tx.InsertEntry(ctx, &e); err != nil {
			return fmt.Errorf("insert entry %s: %w", e.ID, err)
		}
		got, err := tx.GetEntry(ctx, id, e.ID)
		if err != nil {
			return fmt.Errorf("read back entry %s: %w", e.ID, err)
		}
		if charting.DigestEntry(*got) != charting.DigestEntry(e) {
			return fmt.Errorf("entry %s reads back differently from what was archived", e.ID)
		}
	}
	if a.spool != nil {
		err := a.spool.each(func(l samplesLine) error {
			row := store.SampleBatchRow{CaseID: id, SourceID: l.SourceID, Seq: l.Seq, RecordedAt: l.RecordedAt, Actor: l.Actor,
				MinTimeMs: l.MinTimeMs, MaxTimeMs: l.MaxTimeMs, SampleCount: l.SampleCount, Block: l.Block}
			ref := charting.SampleRef(l.SourceID, l.Seq)
			if err := tx.InsertSampleBatch(ctx, &row); err != nil {
				return fmt.Errorf("insert sample batch %s: %w", ref, err)
			}
			got, err := tx.GetSampleBlock(ctx, id, l.SourceID, l.Seq)
			if err != nil {
				return fmt.Errorf("read back sample batch %s: %w", ref, err)
			}
			if !bytes.Equal(got, l.Block) {
				return fmt.Errorf("sample batch %s reads back differently from what was archived", ref)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, src := range sortedKeys(a.seqs) {
		if w := watermark(a.seqs[src]); w > 0 {
			if err := tx.SetSourceWatermark(ctx, id, src, w); err != nil {
				return fmt.Errorf("set source watermark: %w", err)
			}
		}
	}
	for i := range a.c.Signatures {
		if err := tx.InsertSignature(ctx, &a.c.Signatures[i]); err != nil {
			return fmt.Errorf("insert signature %d: %w", a.c.Signatures[i].Number, err)
		}
	}
	for i := range a.ids {
		if err := tx.InsertIdentityReconciliation(ctx, &a.ids[i]); err != nil {
			return fmt.Errorf("insert identity reconciliation %d: %w", a.ids[i].Seq, err)
		}
	}
	for i := range a.links {
		if err := tx.AppendLink(ctx, &a.links[i]); err != nil {
			return fmt.Errorf("append ledger link %d: %w", a.links[i].Seq, err)
		}
	}
	if err := tx.UpdateCaseState(ctx, &c); err != nil {
		return fmt.Errorf("update case state: %w", err)
	}
	got, err := tx.LockCase(ctx, id)
	if err != nil {
		return fmt.Errorf("read back case: %w", err)
	}
	if charting.DigestCaseHeader(charting.HeaderOf(got)) != charting.DigestCaseHeader(charting.HeaderOf(&c)) ||
		got.Status != c.Status || !got.StartedAt.Equal(c.StartedAt) || !got.ClosedAt.Equal(c.ClosedAt) ||
		got.ClosedBy != c.ClosedBy || got.DetailsVersion != c.DetailsVersion || got.Head != c.Head {
		return errors.New("the case reads back differently from what was archived")
	}
	return nil
}

// watermark is the highest w such that batches 1..w are all present, as
// the store keeps it (sourceTrack in store/samples.go).
func watermark(seqs []int64) int64 {
	s := slices.Clone(seqs)
	slices.Sort(s)
	var w int64
	for _, q := range s {
		if q != w+1 {
			break
		}
		w = q
	}
	return w
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// decodeLine decodes one line strictly: unknown members and anything after
// the object are refused.
func decodeLine(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// jsonProblem describes a decoding error without quoting the archive's
// values, which may be patient data.
func jsonProblem(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		tim *time.ParseError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("member %q has the wrong type", typ.Field)
	case errors.As(err, &tim):
		return "a time is not in RFC 3339 form"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "not a complete JSON object"
	}
	return err.Error()
}

// utcTimes checks that archived times are in UTC at the record's precision
// (as Export writes them and the store keeps them) and sets their location
// to UTC.
func utcTimes(ts ...*time.Time) error {
	for _, t := range ts {
		if t.IsZero() {
			*t = time.Time{}
			continue
		}
		if _, off := t.Zone(); off != 0 {
			return errors.New("a time is not in UTC")
		}
		if !t.Equal(charting.NormTime(*t)) {
			return errors.New("a time is more precise than a microsecond")
		}
		*t = t.UTC()
	}
	return nil
}

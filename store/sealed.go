package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// Sealed storage of closed cases.
//
// An open case keeps each sample batch as its own row with its own ledger
// link: a batch is acknowledged only once it is durable and linked, and at
// 1-s batches that costs about 20 bytes a sample (README, Performance).
// Once a case is closed nothing can join it, and its device data can be
// kept far more densely without changing what it is: SealCase rewrites the
// case's batches into segments of per-channel columns (sealedform.go) with
// the ledger links of those batches as compressed headers, and removes the
// batch rows, their links and the trend chunks in the same transaction.
//
// The content is append-only; its storage layout may be compacted by this
// one verified step (DESIGN invariant 2):
//
//   - before writing anything, SealCase verifies the whole record, builds
//     the sealed form, reads it back through the same code every later
//     read uses, and requires every batch row (every column, its block byte
//     for byte), every rebuilt link (header, previous hash, hash) and so
//     the chain head to equal what is stored;
//   - the database removes rows only inside the transaction that writes
//     the sealed form (a sealed_cases row whose `sealing` flag is set
//     there and cleared before commit), only sample batches, their links
//     and trend chunks of that closed or signed case, and only when the
//     counts of batches, samples and links it replaces match the sealed
//     form's (migrations: PostgreSQL 013, SQLite 012). Every other UPDATE,
//     DELETE and TRUNCATE stays refused.
//
// Reads are unchanged: every backend returns a sealed case's batches, links
// and blocks rebuilt from the sealed form (SealedBatches, SealedLinks,
// SealedBlocks), identical to what it returned before, so verification,
// exports, archives and queries give the same bytes.
//
// What a sealed link keeps of its hash is its first four bytes, and every
// link whose sequence is a multiple of 256 keeps it whole. Verification
// recomputes every link's hash from the content anyway (it never trusted
// stored hashes), so the chain is exactly as strong: a sealed batch whose
// samples, times or header were changed no longer matches its prefix and
// is reported at its own link (content_altered); changing the prefixes as
// well breaks the chain at the next anchor or unsealed link, whose full
// hash the changed chain no longer reaches — as rewriting links did before
// sealing. The head, the signatures and the checkpoints outside the
// database keep full hashes.

// SealedCaseRow is the row that marks a case sealed.
type SealedCaseRow struct {
	CaseID   uuid.UUID
	Format   int
	SealedAt time.Time
	Segments int
	// Batches, Samples and Links are what the sealed form replaces: the
	// batch rows, their samples and their ledger links.
	Batches, Samples, Links int64
}

// SealedPart is one row of a sealed case's segments: a manifest (SourceID
// and Channel ""), a source's time columns (Channel "") or a channel's
// value column.
type SealedPart struct {
	CaseID               uuid.UUID
	Seg                  int
	SourceID, Channel    string
	MinTimeMs, MaxTimeMs int64
	SampleCount          int
	Data                 []byte
}

// SealedFilter selects rows of a sealed case.
type SealedFilter struct {
	// ManifestsOnly returns the manifests alone; WithoutManifests all but
	// them.
	ManifestsOnly, WithoutManifests bool
	// Segs restricts the segments; nil means all.
	Segs []int
	// SourceID restricts the time and value rows to one source ("" all);
	// manifests are always returned.
	SourceID string
	// Channels restricts the value rows; nil means all.
	Channels []string
	// Rows whose time range overlaps [FromMs, ToMs) are returned; 0 is
	// open.
	FromMs, ToMs int64
}

// SealedReader reads the sealed form of cases. Every Reader is one.
type SealedReader interface {
	// SealedCase returns the row that marks a case sealed; nil when the
	// case is not sealed.
	SealedCase(ctx context.Context, caseID uuid.UUID) (*SealedCaseRow, error)
	// ScanSealedParts calls fn for each row of a sealed case that matches
	// f, ordered by segment.
	ScanSealedParts(ctx context.Context, caseID uuid.UUID, f SealedFilter, fn func(*SealedPart) error) error
}

func timeFromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// readParts reads rows of a sealed case grouped by segment, and the
// segments in order.
func readParts(ctx context.Context, r SealedReader, caseID uuid.UUID, f SealedFilter) (map[int][]*SealedPart, []int, error) {
	out := make(map[int][]*SealedPart)
	var segs []int
	err := r.ScanSealedParts(ctx, caseID, f, func(p *SealedPart) error {
		if _, ok := out[p.Seg]; !ok {
			segs = append(segs, p.Seg)
		}
		out[p.Seg] = append(out[p.Seg], p)
		return nil
	})
	slices.Sort(segs)
	return out, segs, err
}

// decodeParts rebuilds one segment from its rows, wherever its manifest is.
func decodeParts(parts []*SealedPart, source string) (*decodedSegment, error) {
	i := slices.IndexFunc(parts, func(p *SealedPart) bool { return p.SourceID == "" && p.Channel == "" })
	if i < 0 {
		return nil, sealedCorrupt("a segment's manifest is missing")
	}
	ordered := append([]*SealedPart{parts[i]}, slices.Delete(slices.Clone(parts), i, i+1)...)
	return decodeSegment(ordered, source)
}

// SealedBatches is ScanSampleBatches for a sealed case: it calls fn for
// each batch matching f, rebuilt from the sealed form, in the order the
// batch rows were scanned before sealing. It reports false, calling fn
// for nothing, when the case is not sealed.
//
// A segment whose columns do not decode yields its batches with a nil
// block (so a verifier names each one's link); one whose manifest does not
// decode is skipped, and the error (wrapping errSealedCorrupt) is returned
// after every other batch was passed to fn.
func SealedBatches(ctx context.Context, r SealedReader, caseID uuid.UUID, f SampleFilter, fn func(*SampleBatchRow) error) (bool, error) {
	hdr, err := r.SealedCase(ctx, caseID)
	if err != nil || hdr == nil {
		return false, err
	}
	mans, _, err := readParts(ctx, r, caseID, SealedFilter{ManifestsOnly: true, FromMs: f.FromMs, ToMs: f.ToMs})
	if err != nil {
		return true, err
	}
	segs := make([]int, 0, len(mans))
	for seg := range mans {
		segs = append(segs, seg)
	}
	slices.Sort(segs)
	if len(segs) == 0 {
		return true, nil
	}
	var bad []error
	// A segment at a time: a long case's samples are never all in memory.
	for _, seg := range segs {
		parts, _, err := readParts(ctx, r, caseID, SealedFilter{Segs: []int{seg}, SourceID: f.SourceID})
		if err != nil {
			return true, err
		}
		ds, err := decodeParts(parts[seg], f.SourceID)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		for i, bt := range ds.m.batches {
			src := ds.m.sources[bt.source]
			if f.SourceID != "" && src != f.SourceID {
				continue
			}
			if after, ok := f.After[src]; ok && bt.seq <= after {
				continue
			}
			row := ds.rowOf(caseID, i, false)
			if ds.series[i] != nil {
				if (f.ToMs != 0 && row.MinTimeMs >= f.ToMs) || (f.FromMs != 0 && row.MaxTimeMs < f.FromMs) {
					continue
				}
				if w := f.Implausible; w != nil && !(row.MinTimeMs < w.BeginsMs || row.MaxTimeMs > floorMillis(bt.recordedAt)+w.AheadMs) {
					continue
				}
				if !f.WithoutBlocks {
					row = ds.rowOf(caseID, i, true)
				}
			}
			if err := fn(row); err != nil {
				return true, err
			}
		}
	}
	return true, errors.Join(bad...)
}

// floorMillis is a time in µs as whole milliseconds, rounded down.
func floorMillis(us int64) int64 {
	ms := us / 1000
	if us%1000 != 0 && us < 0 {
		ms--
	}
	return ms
}

// sealedIndex is where each sealed link is: its segment's manifest and
// its batch's index in it.
type sealedIndex struct {
	mans  map[int]*manifest
	bySeq map[int64]sealedRef
	seqs  []int64 // sorted
}

type sealedRef struct {
	seg, i int
}

// readIndex reads every manifest of a sealed case. Manifests that do not
// decode are left out: their links are then missing, which verification
// reports.
func readIndex(ctx context.Context, r SealedReader, caseID uuid.UUID) (*sealedIndex, error) {
	parts, segs, err := readParts(ctx, r, caseID, SealedFilter{ManifestsOnly: true})
	if err != nil {
		return nil, err
	}
	x := &sealedIndex{mans: make(map[int]*manifest), bySeq: make(map[int64]sealedRef)}
	for _, seg := range segs {
		for _, p := range parts[seg] {
			m, err := decodeManifest(p.Data)
			if err != nil {
				continue
			}
			x.mans[seg] = m
			for i, bt := range m.batches {
				x.bySeq[bt.linkSeq] = sealedRef{seg, i}
				x.seqs = append(x.seqs, bt.linkSeq)
			}
		}
	}
	slices.Sort(x.seqs)
	x.seqs = slices.Compact(x.seqs)
	return x, nil
}

// linkOf is the header of a sealed batch's link.
func (x *sealedIndex) linkOf(caseID uuid.UUID, ref sealedRef) charting.Link {
	m := x.mans[ref.seg]
	bt := m.batches[ref.i]
	return charting.Link{CaseID: caseID, Seq: bt.linkSeq, Kind: charting.LinkSamples, Ref: charting.SampleRef(m.sources[bt.source], bt.seq),
		Actor: m.actors[bt.actor], RecordedAt: charting.NormTime(timeFromMicros(bt.recordedAt))}
}

// RawLinks reads the ledger rows of a case as stored (unsealed links only):
// sequence > after, at most limit (<= 0: all).
type RawLinks func(ctx context.Context, after int64, limit int) ([]charting.Link, error)

// LinksHaveGap reports whether links read after `after` skip a sequence:
// the mark of a sealed case, whose sample links are not rows (a sealed
// link is always followed by a stored one, the case's close at the
// latest, so a gap shows however the page ends).
func LinksHaveGap(after int64, rows []charting.Link) bool {
	for i, l := range rows {
		if l.Seq != after+int64(i)+1 {
			return true
		}
	}
	return false
}

// SealedLinks is Links for a case whose stored rows (rows: sequence >
// after, at most limit) skip sequences: it merges the sealed links into
// them, each with its hash recomputed from its batch's content as rebuilt
// from the sealed form. A sealed link whose recomputed hash does not
// match what it kept (its prefix, or its whole hash at an anchor) gets
// a hash made of what was kept, which no content hashes to, so
// verification reports that link. When the case is not sealed, rows are
// returned as they are.
func SealedLinks(ctx context.Context, r SealedReader, caseID uuid.UUID, after int64, limit int, rows []charting.Link, raw RawLinks) ([]charting.Link, error) {
	hdr, err := r.SealedCase(ctx, caseID)
	if err != nil || hdr == nil {
		return rows, err
	}
	x, err := readIndex(ctx, r, caseID)
	if err != nil {
		return nil, err
	}
	// The page: stored and sealed links after `after`, merged, limited.
	var page []charting.Link
	var need []int64
	i := 0
	j, _ := slices.BinarySearch(x.seqs, after+1)
	for (limit <= 0 || len(page) < limit) && (i < len(rows) || j < len(x.seqs)) {
		if j == len(x.seqs) || (i < len(rows) && rows[i].Seq < x.seqs[j]) {
			page = append(page, rows[i])
			i++
			continue
		}
		if i < len(rows) && rows[i].Seq == x.seqs[j] {
			i++ // a stored row where a sealed link is: the stored one is dropped; verification finds the seal's
		}
		page = append(page, x.linkOf(caseID, x.bySeq[x.seqs[j]]))
		need = append(need, x.seqs[j])
		j++
	}
	if len(need) == 0 {
		return page, nil
	}
	hashes, err := x.hashes(ctx, r, caseID, need[0], need[len(need)-1], raw)
	if err != nil {
		return nil, err
	}
	for k := range page {
		if h, ok := hashes[page[k].Seq]; ok && page[k].Kind == charting.LinkSamples {
			page[k].PrevHash, page[k].Hash = h.prev, h.hash
		}
	}
	return page, nil
}

type linkHashes struct{ prev, hash charting.Hash }

// hashes computes the hashes of the sealed links lo..hi, starting from the
// nearest link before lo whose whole hash is known (a stored row or an
// anchor).
func (x *sealedIndex) hashes(ctx context.Context, r SealedReader, caseID uuid.UUID, lo, hi int64, raw RawLinks) (map[int64]linkHashes, error) {
	start := lo
	var prev charting.Hash
	for p := lo - 1; ; p-- {
		if p <= 0 {
			start = 1
			break
		}
		ref, ok := x.bySeq[p]
		if !ok {
			ls, err := raw(ctx, p-1, 1)
			if err != nil {
				return nil, err
			}
			if len(ls) == 1 && ls[0].Seq == p {
				prev = ls[0].Hash
			}
			start = p + 1
			break
		}
		if h, ok := x.mans[ref.seg].anchors[ref.i]; ok {
			prev, start = h, p+1
			break
		}
	}
	stored := make(map[int64]charting.Link)
	ls, err := raw(ctx, start-1, int(hi-start+1))
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		stored[l.Seq] = l
	}
	// Content digests of the sealed links start..hi, segment by segment.
	segs := make(map[int]bool)
	for seq := start; seq <= hi; seq++ {
		if ref, ok := x.bySeq[seq]; ok {
			segs[ref.seg] = true
		}
	}
	digests := make(map[int64]charting.Hash)
	broken := make(map[int64]bool)
	for _, seg := range slices.Sorted(mapKeys(segs)) {
		parts, _, err := readParts(ctx, r, caseID, SealedFilter{Segs: []int{seg}})
		if err != nil {
			return nil, err
		}
		ds, err := decodeParts(parts[seg], "")
		m := x.mans[seg]
		for i, bt := range m.batches {
			if bt.linkSeq < start || bt.linkSeq > hi {
				continue
			}
			if err != nil || ds.series[i] == nil {
				broken[bt.linkSeq] = true
				continue
			}
			digests[bt.linkSeq] = charting.SampleDigest(m.sources[bt.source], bt.seq, ds.series[i])
		}
	}
	out := make(map[int64]linkHashes)
	for seq := start; seq <= hi; seq++ {
		ref, ok := x.bySeq[seq]
		if !ok {
			if l, ok := stored[seq]; ok {
				prev = l.Hash
			}
			continue
		}
		m := x.mans[ref.seg]
		bt := m.batches[ref.i]
		l := x.linkOf(caseID, ref)
		l.PrevHash = prev
		var kept charting.Hash
		copy(kept[:], bt.prefix[:])
		h := kept // unknown content: only what was kept
		if !broken[seq] {
			h = l.ComputeHash(digests[seq])
		}
		shown := h
		if anchor, ok := m.anchors[ref.i]; ok {
			if anchor != h {
				shown = anchor
			}
		} else if !bytes.Equal(h[:sealPrefixLen], bt.prefix[:]) || broken[seq] {
			shown = kept
		}
		out[seq] = linkHashes{prev: prev, hash: shown}
		prev = h
	}
	return out, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// SealedBlocks returns the blocks of the keys that are sealed batches,
// rebuilt from the sealed form; keys of cases not sealed, or not in the
// seal, are absent.
func SealedBlocks(ctx context.Context, r SealedReader, keys []SampleKey) (map[SampleKey][]byte, error) {
	out := make(map[SampleKey][]byte)
	byCase := make(map[uuid.UUID][]SampleKey)
	for _, k := range keys {
		byCase[k.CaseID] = append(byCase[k.CaseID], k)
	}
	for caseID, ks := range byCase {
		hdr, err := r.SealedCase(ctx, caseID)
		if err != nil {
			return nil, err
		}
		if hdr == nil {
			continue
		}
		x, err := readIndex(ctx, r, caseID)
		if err != nil {
			return nil, err
		}
		type where struct{ seg, i int }
		want := make(map[SampleKey]bool, len(ks))
		for _, k := range ks {
			want[k] = true
		}
		at := make(map[SampleKey]where)
		segs := make(map[int]bool)
		for seg, m := range x.mans {
			for i, bt := range m.batches {
				k := SampleKey{caseID, m.sources[bt.source], bt.seq}
				if want[k] {
					at[k] = where{seg, i}
					segs[seg] = true
				}
			}
		}
		for _, seg := range slices.Sorted(mapKeys(segs)) {
			parts, _, err := readParts(ctx, r, caseID, SealedFilter{Segs: []int{seg}})
			if err != nil {
				return nil, err
			}
			ds, err := decodeParts(parts[seg], "")
			if err != nil {
				return nil, err
			}
			for k, w := range at {
				if w.seg == seg && ds.series[w.i] != nil {
					out[k] = ds.rowOf(caseID, w.i, true).Block
				}
			}
		}
	}
	return out, nil
}

// SealResult is what sealing a case did.
type SealResult struct {
	Segments int
	Batches  int64
	Samples  int64
	// BlockBytes is the size of the batches' blocks before, SealedBytes
	// that of the sealed rows' data after.
	BlockBytes, SealedBytes int64
	// Took is the whole sealing; Write the transaction that stores the
	// sealed form and removes the rows (on SQLite other writers wait for
	// it; on PostgreSQL only writes to this closed case do).
	Took, Write time.Duration
}

// ErrAlreadySealed is returned by SealCase for a case sealed before.
var ErrAlreadySealed = errors.New("store: case already sealed")

// SealCase rewrites a closed or signed case's device data into its sealed
// form and removes the batch rows, their ledger links and the trend chunks
// it replaces, in one transaction, after proving that everything read from
// the sealed form equals what is stored (see the top of this file). It
// fails with a precondition error for a case not closed or signed, with
// ErrAlreadySealed for a sealed one, and refuses a case that does not
// verify or whose stored blocks it cannot reproduce byte for byte (then
// nothing is written).
func (s *Store) SealCase(ctx context.Context, caseID uuid.UUID) (*SealResult, error) {
	start := time.Now()
	res, err := s.sealCase(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("seal case: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

func (s *Store) sealCase(ctx context.Context, caseID uuid.UUID) (*SealResult, error) {
	var (
		c     *charting.Case
		links []charting.Link
		parts []*SealedPart
		res   = &SealResult{}
		hdr   *SealedCaseRow
	)
	err := s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		var err error
		if c, err = r.GetCase(ctx, caseID); err != nil {
			return err
		}
		if c.Status != charting.StatusClosed && c.Status != charting.StatusSigned {
			return charting.Preconditionf("case is %s: only a closed or signed case is sealed", c.Status)
		}
		if h, err := r.SealedCase(ctx, caseID); err != nil {
			return err
		} else if h != nil {
			return ErrAlreadySealed
		}
		v, ls, err := verifyRecord(ctx, r, caseID, s.cat.Resolution)
		if err != nil {
			return err
		}
		if v.Bad != nil {
			return fmt.Errorf("the record does not verify (link %d: %s), so it is left as it is", v.Bad.Seq, v.Bad.Problem)
		}
		links = ls
		parts, hdr, err = s.buildSeal(ctx, r, c, links, res)
		return err
	})
	if err != nil {
		return nil, err
	}
	if hdr == nil {
		return res, nil // no device data: nothing to seal
	}
	// Read the sealed form back as every later read will, and require it
	// to give back every batch and every link exactly.
	if err := s.checkSeal(ctx, hdr, parts, links); err != nil {
		return nil, fmt.Errorf("the sealed form does not give back the record, so it was not stored: %w", err)
	}
	began := time.Now()
	defer func() { res.Write = time.Since(began) }()
	err = s.readWrite(ctx, []uuid.UUID{caseID}, func(ctx context.Context, tx Tx) error {
		cc, err := tx.LockCase(ctx, caseID)
		if err != nil {
			return err
		}
		if cc.Status != charting.StatusClosed && cc.Status != charting.StatusSigned {
			return charting.Preconditionf("case is %s: only a closed or signed case is sealed", cc.Status)
		}
		hdr.SealedAt = s.clock()
		return tx.SealCase(ctx, hdr, parts)
	})
	if errors.Is(err, ErrDuplicate) {
		return nil, ErrAlreadySealed
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// buildSeal reads every batch of c through r, in scan order, and encodes
// the segments. The returned header is nil when c has no batch.
func (s *Store) buildSeal(ctx context.Context, r Reader, c *charting.Case, links []charting.Link, res *SealResult) ([]*SealedPart, *SealedCaseRow, error) {
	bySample := make(map[string]charting.Link)
	for _, l := range links {
		if l.Kind == charting.LinkSamples {
			bySample[l.Ref] = l
		}
	}
	if n := len(links); n > 0 && links[n-1].Kind == charting.LinkSamples {
		// Cannot happen for a closed case (its close is linked last), and
		// a sealed link must have a stored successor.
		return nil, nil, errors.New("the case's last link records samples")
	}
	var (
		parts  []*SealedPart
		seg    []origBatch
		segN   int
		encErr error
	)
	segNo := 0
	err := r.ScanSampleBatches(ctx, c.ID, SampleFilter{}, func(row *SampleBatchRow) error {
		if encErr != nil {
			return encErr
		}
		series, err := samplecodec.DecodeBlock(row.Block)
		if err != nil {
			return fmt.Errorf("batch %s: %w", charting.SampleRef(row.SourceID, row.Seq), err)
		}
		l, ok := bySample[charting.SampleRef(row.SourceID, row.Seq)]
		if !ok {
			return fmt.Errorf("batch %s has no ledger link", charting.SampleRef(row.SourceID, row.Seq))
		}
		if len(seg) > 0 && (len(seg) >= sealSegmentBatches || segN+row.SampleCount > sealSegmentSamples) {
			flushSeg(&parts, &seg, &segN, &segNo, c, s.cat.Resolution, res, &encErr)
		}
		seg = append(seg, origBatch{row: row, series: series, link: l})
		segN += row.SampleCount
		res.Batches++
		res.Samples += int64(row.SampleCount)
		res.BlockBytes += int64(len(row.Block))
		return nil
	})
	if err == nil {
		flushSeg(&parts, &seg, &segN, &segNo, c, s.cat.Resolution, res, &encErr)
		err = encErr
	}
	if err != nil {
		return nil, nil, err
	}
	if res.Batches == 0 {
		return nil, nil, nil
	}
	if int64(len(bySample)) != res.Batches {
		return nil, nil, fmt.Errorf("%d sample links for %d batches", len(bySample), res.Batches)
	}
	hdr := &SealedCaseRow{CaseID: c.ID, Format: SealFormat, Segments: segNo, Batches: res.Batches, Samples: res.Samples, Links: int64(len(bySample))}
	return parts, hdr, nil
}

// flushSeg encodes the batches gathered for one segment.
func flushSeg(parts *[]*SealedPart, seg *[]origBatch, segN, segNo *int, c *charting.Case, resolution func(string) float64, res *SealResult, encErr *error) {
	if len(*seg) == 0 || *encErr != nil {
		return
	}
	plausible := func(r *SampleBatchRow) bool { return c.PlausiblyTimed(r.RecordedAt, r.MinTimeMs, r.MaxTimeMs) }
	ps, err := encodeSegment(c.ID, *segNo, *seg, resolution, plausible)
	if err != nil {
		*encErr = err
		return
	}
	for _, p := range ps {
		res.SealedBytes += int64(len(p.Data))
	}
	*parts = append(*parts, ps...)
	*segNo++
	res.Segments = *segNo
	*seg, *segN = nil, 0
}

// checkSeal reads the sealed form back through the read path and compares
// every batch row and every link with what is stored now.
func (s *Store) checkSeal(ctx context.Context, hdr *SealedCaseRow, parts []*SealedPart, links []charting.Link) error {
	var unsealed []charting.Link
	for _, l := range links {
		if l.Kind != charting.LinkSamples {
			unsealed = append(unsealed, l)
		}
	}
	mem := &memSealed{hdr: hdr, parts: parts}
	raw := func(_ context.Context, after int64, limit int) ([]charting.Link, error) {
		var out []charting.Link
		for _, l := range unsealed {
			if l.Seq > after && (limit <= 0 || len(out) < limit) {
				out = append(out, l)
			}
		}
		return out, nil
	}
	rows, _ := raw(ctx, 0, 0)
	got, err := SealedLinks(ctx, mem, hdr.CaseID, 0, 0, rows, raw)
	if err != nil {
		return err
	}
	if len(got) != len(links) {
		return fmt.Errorf("%d links rebuilt, %d stored", len(got), len(links))
	}
	for i := range links {
		a, b := got[i], links[i]
		if a.Seq != b.Seq || a.Kind != b.Kind || a.Ref != b.Ref || a.Actor != b.Actor || a.Reason != b.Reason ||
			!a.RecordedAt.Equal(b.RecordedAt) || a.PrevHash != b.PrevHash || a.Hash != b.Hash {
			return fmt.Errorf("link %d rebuilt differs from the stored one", b.Seq)
		}
	}
	// Every batch, in order, field by field and byte by byte.
	var want []*SampleBatchRow
	err = s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		return r.ScanSampleBatches(ctx, hdr.CaseID, SampleFilter{}, func(row *SampleBatchRow) error {
			want = append(want, row)
			return nil
		})
	})
	if err != nil {
		return err
	}
	n := 0
	_, err = SealedBatches(ctx, mem, hdr.CaseID, SampleFilter{}, func(row *SampleBatchRow) error {
		if n >= len(want) {
			return fmt.Errorf("more batches rebuilt than stored")
		}
		w := want[n]
		n++
		if row.SourceID != w.SourceID || row.Seq != w.Seq || !row.RecordedAt.Equal(w.RecordedAt) || row.Actor != w.Actor ||
			row.MinTimeMs != w.MinTimeMs || row.MaxTimeMs != w.MaxTimeMs || row.SampleCount != w.SampleCount || !bytes.Equal(row.Block, w.Block) {
			return fmt.Errorf("batch %s rebuilt differs from the stored one", charting.SampleRef(w.SourceID, w.Seq))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(want) {
		return fmt.Errorf("%d batches rebuilt, %d stored", n, len(want))
	}
	return nil
}

// memSealed is a SealedReader over a sealed form not yet stored.
type memSealed struct {
	hdr   *SealedCaseRow
	parts []*SealedPart
}

func (m *memSealed) SealedCase(_ context.Context, caseID uuid.UUID) (*SealedCaseRow, error) {
	if caseID != m.hdr.CaseID {
		return nil, nil
	}
	return m.hdr, nil
}

func (m *memSealed) ScanSealedParts(_ context.Context, caseID uuid.UUID, f SealedFilter, fn func(*SealedPart) error) error {
	if caseID != m.hdr.CaseID {
		return nil
	}
	for _, p := range m.parts {
		if !f.Matches(p) {
			continue
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// Matches reports whether a row is one f selects; backends select the
// same rows in SQL.
func (f SealedFilter) Matches(p *SealedPart) bool {
	manifest := p.SourceID == "" && p.Channel == ""
	switch {
	case f.ManifestsOnly && !manifest, f.WithoutManifests && manifest:
		return false
	case f.Segs != nil && !slices.Contains(f.Segs, p.Seg):
		return false
	case !manifest && f.SourceID != "" && p.SourceID != f.SourceID:
		return false
	case p.Channel != "" && f.Channels != nil && !slices.Contains(f.Channels, p.Channel):
		return false
	case f.ToMs != 0 && p.MinTimeMs >= f.ToMs:
		return false
	case f.FromMs != 0 && p.MaxTimeMs < f.FromMs:
		return false
	}
	return true
}

// sealedResend looks up a batch sent to a case that takes no new batch:
// a resend of one held by the case's sealed form that its watermark does
// not cover (stored above a gap) was not looked up with the others. It
// returns nil when the batch is not stored, else whether the content is
// the same.
func sealedResend(ctx context.Context, tx Tx, key SampleKey, p *preparedBatch) (*bool, error) {
	blocks, err := tx.SampleBlocks(ctx, []SampleKey{key})
	if err != nil {
		return nil, err
	}
	stored, ok := blocks[key]
	if !ok {
		return nil, nil
	}
	same := sameContent(stored, p)
	return &same, nil
}

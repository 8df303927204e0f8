package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// SampleResult is the outcome of one batch of AppendSamples.
type SampleResult struct {
	// Duplicate is true when the batch had been stored before.
	Duplicate bool
	// Watermark is the source's resume point after the batch.
	Watermark int64
	// Err is nil when the batch is durable.
	Err error
}

// AppendSamples validates and stores sample batches, possibly of several
// cases, in one transaction (group commit), and returns one result per
// batch. A batch is durable exactly when its result has no error and
// AppendSamples has returned. One batch's invalid content, closed case or
// content the database refuses fails that batch only.
func (s *Store) AppendSamples(ctx context.Context, actor string, batches []*charting.SampleBatch) []SampleResult {
	for _, b := range batches {
		b.Actor = actor
	}
	return s.AppendSampleBatches(ctx, batches)
}

// AppendSampleBatches is AppendSamples for batches sent by different
// principals, as a server's shared committer gathers them from many
// streams: each batch is recorded under its own Actor, which the caller
// sets to the authenticated principal that sent it.
//
// The transaction costs a fixed number of database statements whatever the
// number of batches: the cases are locked together, the sources' resume
// points read together, the blocks of possible resends fetched together,
// and the new rows, ledger links, watermarks and case states written
// together. The rules are those of one batch at a time, applied in a fixed
// order (cases by id, a case's batches in the order given): a batch is a
// duplicate when the same content is stored under its (case, source,
// sequence), also earlier in the same call; a conflict when different
// content is; refused when the case cannot be charted; otherwise stored
// with its own ledger link. Each result's watermark is the source's resume
// point just after that batch.
//
// A batch the database itself refuses (a RefusedError: a value it will not
// store, a constraint, a trigger) fails alone: the others are committed in
// smaller transactions (appendIsolating). An error about the database
// fails every batch not committed.
func (s *Store) AppendSampleBatches(ctx context.Context, batches []*charting.SampleBatch) []SampleResult {
	res := make([]SampleResult, len(batches))
	now := s.clock()
	preps := make([]preparedBatch, len(batches))
	var live []int
	for i, b := range batches {
		if err := charting.ValidateBatch(s.cat, b, now); err != nil {
			res[i].Err = err
			continue
		}
		if b.Actor == "" {
			// A programming error of the caller, not the client's fault;
			// the record must never hold an anonymous write.
			res[i].Err = errors.New("append samples: batch has no actor")
			continue
		}
		b.RecordedAt = now
		preps[i] = prepare(b, s.cat)
		live = append(live, i)
	}
	if len(live) == 0 {
		return res
	}
	s.appendIsolating(ctx, batches, preps, live, res)
	return res
}

// appendIsolating stores the batches at idx in one transaction and puts
// their results into res. When the database refuses that transaction for
// the data of some batch (a RefusedError: a data exception, a constraint or
// a trigger's refusal; or a key or reference the store itself should have
// ruled out, ErrDuplicate or ErrNotFound), it isolates the batch or batches
// at fault by bisection: each half is tried in a transaction of its own,
// halves that fail again are split again, and a batch refused on its own
// fails alone. The others are committed and acknowledged as usual. With k
// refused batches among n this costs about 2k·log2(n/k) extra, mostly
// small, transactions (at most 2n−1 in all), all within the caller's
// context, so a committer's time limit still bounds it.
//
// Any other error is about the database (connection, timeout, shutdown,
// serialization failures the backend already retried): it fails every
// batch not yet committed, and nothing more is tried, since retrying
// smaller groups would multiply the load on a database already in trouble
// while telling the clients, who resend, nothing new. It is returned so a
// caller part-way through a bisection stops too.
//
// This lives here rather than in the server's group committer
// (store/ingest) because it is AppendSamples' own contract that one batch's
// content fails that batch only, for every caller; because the store has
// each batch validated and encoded already (preps), so a smaller
// transaction re-uses that work; and because the store is where the
// backends' errors are told apart. The committer stays a scheduler: the
// extra transactions run in its commit slot, under its time limit.
func (s *Store) appendIsolating(ctx context.Context, batches []*charting.SampleBatch, preps []preparedBatch, idx []int, res []SampleResult) error {
	out, err := s.commitGroup(ctx, batches, preps, idx)
	if err == nil {
		for _, i := range idx {
			res[i] = out[i]
		}
		return nil
	}
	byData := refusedForData(err)
	if !byData || len(idx) == 1 {
		for _, i := range idx {
			res[i] = SampleResult{Err: fmt.Errorf("append samples: %w", err)}
		}
		if byData {
			return nil // this batch alone is at fault
		}
		return err
	}
	mid := len(idx) / 2
	if err := s.appendIsolating(ctx, batches, preps, idx[:mid], res); err != nil {
		for _, i := range idx[mid:] {
			res[i] = SampleResult{Err: fmt.Errorf("append samples: %w", err)}
		}
		return err
	}
	return s.appendIsolating(ctx, batches, preps, idx[mid:], res)
}

// commitGroup runs one transaction storing the batches at idx and returns
// their results, indexed like batches, once it committed. The closure
// writes nothing but a fresh out per attempt, so a retried transaction
// starts from nothing of the failed one.
func (s *Store) commitGroup(ctx context.Context, batches []*charting.SampleBatch, preps []preparedBatch, idx []int) ([]SampleResult, error) {
	var out []SampleResult
	err := s.readWrite(ctx, caseIDsOf(batches, idx), func(ctx context.Context, tx Tx) error {
		out = make([]SampleResult, len(batches))
		return commitSamples(ctx, tx, batches, preps, idx, out)
	})
	return out, err
}

// refusedForData reports whether a failed group commit failed because of
// what some batch holds, so that the same batches without it would commit.
// Besides a backend's RefusedError, a duplicate key or a missing referenced
// row count: the group commit holds its cases' locks and decides
// duplicates itself, so either can only come from a batch's own rows.
func refusedForData(err error) bool {
	return IsRefused(err) || errors.Is(err, ErrDuplicate) || errors.Is(err, charting.ErrNotFound)
}

// preparedBatch is what a valid batch is stored as, computed once before
// the transaction so a retried transaction does not compute it again.
type preparedBatch struct {
	row    SampleBatchRow
	digest charting.Hash
}

func prepare(b *charting.SampleBatch, cat *charting.Catalogue) preparedBatch {
	lo, hi := b.TimeRange()
	return preparedBatch{
		row: SampleBatchRow{CaseID: b.CaseID, SourceID: b.SourceID, Seq: b.Seq, RecordedAt: b.RecordedAt, Actor: b.Actor,
			MinTimeMs: lo, MaxTimeMs: hi, SampleCount: b.SampleCount(), Block: samplecodec.EncodeBlock(b.Series, cat.Resolution)},
		digest: charting.SampleDigest(b.SourceID, b.Seq, b.Series),
	}
}

// commitSamples decides and writes the live batches in tx, putting each
// batch's outcome into out. A returned error aborts the transaction.
func commitSamples(ctx context.Context, tx Tx, batches []*charting.SampleBatch, preps []preparedBatch, live []int, out []SampleResult) error {
	byCase := make(map[uuid.UUID][]int)
	ids := make([]uuid.UUID, 0, len(live))
	for _, i := range live {
		id := batches[i].CaseID
		if byCase[id] == nil {
			ids = append(ids, id)
		}
		byCase[id] = append(byCase[id], i)
	}
	ids = sortedCaseIDs(ids)
	cases, err := tx.LockCases(ctx, ids)
	if err != nil {
		return err
	}

	// Resume points of every source written to, then the stored blocks of
	// those batches that can already be stored: at or below the
	// watermark, or at or above a batch stored out of order. Batches of a
	// source that streams in order need no lookup at all.
	var srcKeys []SourceKey
	seen := make(map[SourceKey]bool)
	for _, i := range live {
		b := batches[i]
		k := SourceKey{b.CaseID, b.SourceID}
		if cases[b.CaseID] != nil && !seen[k] {
			seen[k] = true
			srcKeys = append(srcKeys, k)
		}
	}
	states, err := tx.SourceStates(ctx, srcKeys)
	if err != nil {
		return err
	}
	var probe []SampleKey
	for _, i := range live {
		b := batches[i]
		if cases[b.CaseID] == nil {
			continue
		}
		st := states[SourceKey{b.CaseID, b.SourceID}]
		if b.Seq <= st.Watermark || (st.NextStored != 0 && b.Seq >= st.NextStored) {
			probe = append(probe, SampleKey{b.CaseID, b.SourceID, b.Seq})
		}
	}
	stored, err := tx.SampleBlocks(ctx, probe)
	if err != nil {
		return err
	}

	var (
		rows    []*SampleBatchRow
		links   []charting.Link
		changed []*charting.Case
	)
	written := make(map[SampleKey][]byte)
	sources := make(map[SourceKey]*sourceTrack, len(srcKeys))
	for _, id := range ids {
		c := cases[id]
		if c == nil {
			for _, i := range byCase[id] {
				out[i] = SampleResult{Err: fmt.Errorf("append samples: %w", charting.ErrNotFound)}
			}
			continue
		}
		wrote := false
		for _, i := range byCase[id] {
			b, p := batches[i], &preps[i]
			key := SampleKey{id, b.SourceID, b.Seq}
			prev, ok := written[key]
			if !ok {
				prev, ok = stored[key]
			}
			switch {
			case ok && sameContent(prev, p):
				out[i].Duplicate = true
			case ok:
				out[i].Err = fmt.Errorf("batch %s: %w", charting.SampleRef(b.SourceID, b.Seq), charting.ErrConflict)
				continue
			default:
				if err := c.CanChart(); err != nil {
					// A closed case takes no new batch; but a resend of a
					// batch stored above a gap in a sealed case was not
					// probed (its watermark says nothing about it).
					if dup, cerr := sealedResend(ctx, tx, key, p); cerr != nil {
						return cerr
					} else if dup != nil {
						out[i].Duplicate, out[i].Err = *dup, nil
						if !*dup {
							out[i].Err = fmt.Errorf("batch %s: %w", charting.SampleRef(b.SourceID, b.Seq), charting.ErrConflict)
							continue
						}
						break
					}
					out[i].Err = err
					continue
				}
				rows = append(rows, &p.row)
				l := charting.NextLink(c.ID, c.Head, charting.LinkSamples, charting.SampleRef(b.SourceID, b.Seq), b.Actor, "", b.RecordedAt, p.digest)
				links = append(links, l)
				c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
				markStarted(c, b.RecordedAt)
				written[key] = p.row.Block
				wrote = true
			}
			sk := SourceKey{id, b.SourceID}
			t := sources[sk]
			if t == nil {
				t = &sourceTrack{key: sk, state: states[sk], w: states[sk].Watermark, written: make(map[int64]bool)}
				sources[sk] = t
			}
			if !out[i].Duplicate {
				t.written[b.Seq] = true
			}
			if out[i].Watermark, err = t.advance(ctx, tx, b.Seq); err != nil {
				return err
			}
		}
		if wrote {
			changed = append(changed, c)
		}
	}

	marks := make(map[SourceKey]int64)
	for k, t := range sources {
		if t.w != t.state.Watermark {
			marks[k] = t.w
		}
	}
	if err := tx.InsertSampleBatches(ctx, rows); err != nil {
		return err
	}
	if err := tx.AppendLinks(ctx, links); err != nil {
		return fmt.Errorf("append ledger links: %w", err)
	}
	if err := tx.SetSourceWatermarks(ctx, marks); err != nil {
		return err
	}
	return tx.UpdateCaseStates(ctx, changed)
}

// storedSeqsPage is how many stored sequences above a watermark are read at
// a time when a late batch closes a gap: enough for any realistic burst of
// out-of-order batches in one read, few enough that a pathological source
// cannot make one lookup large.
const storedSeqsPage = 512

// sourceTrack follows one source's watermark through a group commit.
type sourceTrack struct {
	key     SourceKey
	state   SourceState    // as read at the start of the transaction
	w       int64          // the watermark so far
	written map[int64]bool // sequences stored by this transaction
	// known holds stored sequences above the original watermark read so
	// far, all of them up to knownTo (math.MaxInt64 once everything is
	// read).
	known   map[int64]bool
	knownTo int64
}

// advance moves the watermark past seq and past any batches stored earlier
// out of order, and returns it.
func (t *sourceTrack) advance(ctx context.Context, tx Tx, seq int64) (int64, error) {
	if seq != t.w+1 {
		return t.w, nil
	}
	t.w = seq
	for {
		ok, err := t.isStored(ctx, tx, t.w+1)
		if err != nil || !ok {
			return t.w, err
		}
		t.w++
	}
}

// isStored reports whether batch seq (above the original watermark) is
// stored, by this transaction or before it.
func (t *sourceTrack) isStored(ctx context.Context, tx Tx, seq int64) (bool, error) {
	if t.written[seq] {
		return true, nil
	}
	if t.state.NextStored == 0 || seq < t.state.NextStored {
		return false, nil
	}
	if seq > t.knownTo {
		seqs, err := tx.StoredSeqs(ctx, t.key, seq-1, storedSeqsPage)
		if err != nil {
			return false, err
		}
		if t.known == nil {
			t.known = make(map[int64]bool, len(seqs))
		}
		for _, q := range seqs {
			t.known[q] = true
		}
		t.knownTo = math.MaxInt64
		if len(seqs) == storedSeqsPage {
			t.knownTo = seqs[len(seqs)-1]
		}
	}
	return t.known[seq], nil
}

// SourcePositions returns the watermark of each source of a case, with 0 for
// requested sources that have none.
func (s *Store) SourcePositions(ctx context.Context, caseID uuid.UUID, sources []string) (map[string]int64, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("source positions: %w", err)
	}
	pos, err := s.b.SourceWatermarks(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("source positions: %w", err)
	}
	for _, src := range sources {
		if _, ok := pos[src]; !ok {
			pos[src] = 0
		}
	}
	return pos, nil
}

// SampleQuery selects device data.
type SampleQuery struct {
	CaseID   uuid.UUID
	Channels []string // empty: all
	SourceID string   // empty: all
	FromMs   int64    // inclusive; 0: from the first sample
	ToMs     int64    // exclusive; 0: to the last sample
	Buckets  int      // 0: raw
	// RawLimit bounds a raw answer's samples; 0 means MaxRawSamples. The
	// server raises it for LTTB, which reduces what it reads.
	RawLimit int
}

// Query limits.
const (
	MaxRawSamples = 100000
	MaxBuckets    = 10000
)

// SeriesKey identifies a channel from one source.
type SeriesKey struct{ Channel, SourceID string }

// SampleQueryResult holds raw series or downsampled buckets.
type SampleQueryResult struct {
	Raw         map[SeriesKey]*charting.Series
	Downsampled map[SeriesKey][]charting.Bucket
	WidthMs     int64
	// TimeImplausible marks, for raw series that have any, the samples
	// timed outside the case's device window (Case.DeviceWindow of their
	// batch's receipt): parallel to the series' samples.
	TimeImplausible map[SeriesKey][]bool
}

// QuerySamples reads the batches overlapping the range, keeps the requested
// channels, and returns them raw or in buckets.
//
// Device times are kept as sent, so a source whose clock was reset (1970)
// or runs far ahead has samples far from the case. A raw answer returns
// them, in whatever range covers them, marked in TimeImplausible: the
// record keeps everything. A bucketed answer leaves them out altogether:
// they neither fall in a bucket nor widen an open range (whose ends come
// from the plausibly timed samples only), so one reset clock cannot make
// every bucket years wide. Readings outside a channel's plausible range are
// counted per bucket (OutOfRangeCount) and kept out of its statistics.
func (s *Store) QuerySamples(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
	c, err := s.checkQuery(ctx, q)
	if err != nil {
		return nil, err
	}
	if q.Buckets > 0 {
		return s.queryBuckets(ctx, c, q)
	}
	raw, late, err := s.collect(ctx, c, q)
	if err != nil {
		return nil, err
	}
	return &SampleQueryResult{Raw: raw, TimeImplausible: late}, nil
}

// querySamplesNaive is the reference path that QuerySamples' bucketed
// answers are tested against: every matching plausibly timed sample decoded
// into raw series, sorted by time, then bucketed.
func (s *Store) querySamplesNaive(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
	c, err := s.checkQuery(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.naive(ctx, c, q)
}

func (s *Store) naive(ctx context.Context, c *charting.Case, q SampleQuery) (*SampleQueryResult, error) {
	raw, late, err := s.collect(ctx, c, q)
	if err != nil {
		return nil, err
	}
	if q.Buckets == 0 {
		return &SampleQueryResult{Raw: raw, TimeImplausible: late}, nil
	}
	return s.downsample(raw, q), nil
}

// checkQuery validates q and returns its case.
func (s *Store) checkQuery(ctx context.Context, q SampleQuery) (*charting.Case, error) {
	var v charting.Violations
	if q.Buckets < 0 || q.Buckets > MaxBuckets {
		v.Add("buckets", "must be 0 (raw) to %d", MaxBuckets)
	}
	if q.ToMs != 0 && q.ToMs <= q.FromMs {
		v.Add("end", "must be after start")
	}
	for i, ch := range q.Channels {
		if _, ok := s.cat.Lookup(ch); !ok {
			v.Add(fmt.Sprintf("channels[%d]", i), "unknown channel %q", ch)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	c, err := s.b.GetCase(ctx, q.CaseID)
	if err != nil {
		return nil, fmt.Errorf("query samples: %w", err)
	}
	return c, nil
}

// collect reads the samples of q's range. For a raw query (q.Buckets 0)
// it returns every sample, and the implausibly timed ones' marks by series
// (nil when there are none); for a bucketed one it leaves implausibly
// timed samples out.
func (s *Store) collect(ctx context.Context, c *charting.Case, q SampleQuery) (map[SeriesKey]*charting.Series, map[SeriesKey][]bool, error) {
	to := q.ToMs
	if to == 0 {
		to = math.MaxInt64
	}
	out := make(map[SeriesKey]*charting.Series)
	late := make(map[SeriesKey][]bool)
	anyLate := false
	total := 0
	// Only the wanted channels are decoded; the walker reuses its buffers,
	// and the samples are copied out below.
	var w samplecodec.Walker
	wanted := func(name []byte) bool { return len(q.Channels) == 0 || slices.Contains(q.Channels, string(name)) }
	err := s.b.ScanSampleBatches(ctx, q.CaseID, SampleFilter{SourceID: q.SourceID, FromMs: q.FromMs, ToMs: q.ToMs}, func(row *SampleBatchRow) error {
		plausible := c.PlausiblyTimed(row.RecordedAt, row.MinTimeMs, row.MaxTimeMs)
		win := c.DeviceWindow(row.RecordedAt)
		err := w.Walk(row.Block, wanted, func(name []byte, sr charting.Series) error {
			if !plausible && q.Buckets > 0 {
				sr = sr.Within(win)
			}
			key := SeriesKey{string(name), row.SourceID}
			dst := out[key]
			if dst == nil {
				dst = &charting.Series{Channel: key.Channel}
				out[key] = dst
			}
			for i, t := range sr.TimesMs {
				if t < q.FromMs || t >= to {
					continue
				}
				dst.TimesMs = append(dst.TimesMs, t)
				dst.Values = append(dst.Values, sr.Values[i])
				dst.Invalid = append(dst.Invalid, sr.IsInvalid(i))
				if q.Buckets == 0 {
					bad := !plausible && !win.ContainsMs(t)
					late[key] = append(late[key], bad)
					anyLate = anyLate || bad
				}
				total++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("batch %s: %w", charting.SampleRef(row.SourceID, row.Seq), err)
		}
		if limit := cmp.Or(q.RawLimit, MaxRawSamples); q.Buckets == 0 && total > limit {
			return &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "buckets",
				Description: fmt.Sprintf("more than %d raw samples match; narrow the range or ask for buckets", limit)}}}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("query samples: %w", err)
	}
	for key, sr := range out {
		sortSeries(sr, late[key])
	}
	if !anyLate {
		return out, nil, nil
	}
	for key, marks := range late {
		if !slices.Contains(marks, true) {
			delete(late, key)
		}
	}
	return out, late, nil
}

// sortSeries orders samples by time, and marks (when not nil) with them:
// batches of one source may overlap in time when a device re-sends or
// clocks step back.
func sortSeries(s *charting.Series, marks []bool) {
	if slices.IsSorted(s.TimesMs) {
		return
	}
	idx := make([]int, s.Len())
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s.TimesMs[a], s.TimesMs[b]) })
	t, v, inv := make([]int64, len(idx)), make([]float64, len(idx)), make([]bool, len(idx))
	var m []bool
	if marks != nil {
		m = make([]bool, len(idx))
	}
	for k, i := range idx {
		t[k], v[k], inv[k] = s.TimesMs[i], s.Values[i], s.Invalid[i]
		if m != nil {
			m[k] = marks[i]
		}
	}
	s.TimesMs, s.Values, s.Invalid = t, v, inv
	copy(marks, m)
}

func (s *Store) downsample(raw map[SeriesKey]*charting.Series, q SampleQuery) *SampleQueryResult {
	from, to := q.FromMs, q.ToMs
	if from == 0 || to == 0 {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, sr := range raw {
			if n := sr.Len(); n > 0 {
				lo, hi = min(lo, sr.TimesMs[0]), max(hi, sr.TimesMs[n-1])
			}
		}
		if from == 0 {
			from = lo
		}
		if to == 0 {
			to = hi + 1
		}
	}
	res := &SampleQueryResult{Downsampled: make(map[SeriesKey][]charting.Bucket, len(raw))}
	for key, sr := range raw {
		if sr.Len() == 0 {
			continue // no sample in range: left out (see streamBuckets)
		}
		d := charting.NewDownsampler(from, to, q.Buckets).Flagging(s.cat.Flagging(key.Channel))
		d.Add(*sr)
		res.Downsampled[key] = d.Buckets()
		res.WidthMs = d.WidthMs()
	}
	if res.WidthMs == 0 && q.FromMs != 0 && q.ToMs != 0 {
		res.WidthMs = charting.BucketWidth(from, to, q.Buckets) // no series, same width
	}
	return res
}

package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// CommitFeed wakes the watchers of a case in this process after a write to
// the case commits. It is a latency aid only: a wake says "read again", it
// carries no data, and a watcher that misses one (or a write committed by
// another server, which never wakes it) still finds every write by reading
// the ledger from its position. So a wake is dropped when the watcher has
// one pending, and the feed never grows with the number of writes.
type CommitFeed struct {
	mu   sync.Mutex
	subs map[uuid.UUID]map[chan struct{}]struct{}
	// Cases committed here and not yet relayed to other servers, while
	// RelayCommits runs; bounded by the number of cases written between
	// two relays.
	relaying bool
	pending  map[uuid.UUID]struct{}
	relay    chan struct{} // a relay is due (coalesced)
}

// NewCommitFeed returns an empty feed.
func NewCommitFeed() *CommitFeed {
	return &CommitFeed{subs: make(map[uuid.UUID]map[chan struct{}]struct{}),
		pending: make(map[uuid.UUID]struct{}), relay: make(chan struct{}, 1)}
}

// Subscribe returns a channel that receives a value after each commit to
// the case (coalesced: at most one pending), and a function that ends the
// subscription.
func (f *CommitFeed) Subscribe(caseID uuid.UUID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[caseID] == nil {
		f.subs[caseID] = make(map[chan struct{}]struct{})
	}
	f.subs[caseID][ch] = struct{}{}
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs[caseID], ch)
		if len(f.subs[caseID]) == 0 {
			delete(f.subs, caseID)
		}
	}
}

// Wake signals every subscriber of the cases.
func (f *CommitFeed) Wake(caseIDs ...uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range caseIDs {
		for ch := range f.subs[id] {
			select {
			case ch <- struct{}{}:
			default: // a wake is already pending: it covers this one too
			}
		}
	}
}

// wakeAll signals every subscriber of every case.
func (f *CommitFeed) wakeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, subs := range f.subs {
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// committed wakes this process's watchers of the cases and, while commits
// are relayed, queues the cases for the other servers.
func (f *CommitFeed) committed(caseIDs []uuid.UUID) {
	f.Wake(caseIDs...)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.relaying || len(caseIDs) == 0 {
		return
	}
	for _, id := range caseIDs {
		f.pending[id] = struct{}{}
	}
	select {
	case f.relay <- struct{}{}:
	default:
	}
}

// takePending returns the cases to relay and forgets them.
func (f *CommitFeed) takePending() []uuid.UUID {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uuid.UUID, 0, len(f.pending))
	for id := range f.pending {
		out = append(out, id)
	}
	clear(f.pending)
	return out
}

func (f *CommitFeed) setRelaying(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relaying = on
	clear(f.pending)
}

// CommitRelay is a Backend that carries commit wakes between the servers of
// one database (PostgreSQL: NOTIFY and LISTEN), so a watcher on one server
// hears at once of a write made through another instead of at its next
// poll. It is an optimisation only: a lost notification (a listener
// reconnecting) delays a watcher until its poll, it never loses data.
type CommitRelay interface {
	// NotifyCommitted tells every listening server that the cases were
	// written.
	NotifyCommitted(ctx context.Context, caseIDs []uuid.UUID) error
	// ListenCommitted calls fn with each case reported written (by any
	// server, this one included) until ctx ends, reconnecting after a lost
	// connection. Each time it starts listening it calls fn with uuid.Nil:
	// writes made before may have gone unheard, so every watcher should
	// read again.
	ListenCommitted(ctx context.Context, fn func(caseID uuid.UUID))
}

// RelayCommits carries commit wakes between servers until ctx ends, when
// the backend is a CommitRelay (else it returns at once): it listens for
// other servers' commits and wakes this process's watchers, and it notifies
// the others of this process's commits. Notifying runs here, off the write
// path, one statement for every case committed since the last: a write is
// acknowledged without waiting for it.
func (s *Store) RelayCommits(ctx context.Context) {
	r, ok := capability[CommitRelay](s.b)
	if !ok {
		return
	}
	s.commits.setRelaying(true)
	defer s.commits.setRelaying(false)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		r.ListenCommitted(ctx, func(id uuid.UUID) {
			if id == uuid.Nil {
				s.commits.wakeAll()
				return
			}
			s.commits.Wake(id)
		})
	}()
	defer func() { <-listening }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.commits.relay:
		}
		if ids := s.commits.takePending(); len(ids) > 0 {
			if err := r.NotifyCommitted(ctx, ids); err != nil && ctx.Err() == nil {
				// Other servers' watchers find these writes at their poll.
				s.log.Warn("watch: could not notify other servers of commits", "err", err.Error())
			}
		}
	}
}

// Commits returns the store's commit feed.
func (s *Store) Commits() *CommitFeed { return s.commits }

// WatchItem is what one ledger link of a case brings to a watcher: the
// entry it records, or the samples of the batch it records, or (for the
// other kinds) nothing but the link.
type WatchItem struct {
	Link charting.Link
	// Entry is set for entry, correction and addendum links.
	Entry *charting.Entry
	// SourceID and Samples are set for sample links: the batch's series.
	SourceID string
	Samples  []charting.Series
}

// WatchLinks returns up to limit ledger links of a case after position
// after, in order: what a watcher reads next before WatchContent.
func (s *Store) WatchLinks(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	return s.b.Links(ctx, caseID, after, limit)
}

// WatchContent loads what each link carries, in order. It stops early, after
// the link that brings the number of samples read to maxSamples or more, so
// a watcher's memory stays bounded whatever the batches hold; the caller
// continues from the last item returned. The links must be the case's, as
// read from its ledger: their content is committed with them.
func (s *Store) WatchContent(ctx context.Context, caseID uuid.UUID, links []charting.Link, maxSamples int) ([]WatchItem, error) {
	items := make([]WatchItem, 0, len(links))
	entries, err := s.watchEntries(ctx, caseID, links)
	if err != nil {
		return nil, err
	}
	samples := 0
	for i := 0; i < len(links); {
		l := links[i]
		switch l.Kind {
		case charting.LinkEntry, charting.LinkCorrection, charting.LinkAddendum:
			id, _ := uuid.Parse(l.Ref)
			e := entries[id]
			if e == nil {
				// The entry commits with its link: it cannot be missing
				// unless the record was tampered with.
				return nil, fmt.Errorf("watch: entry %s of ledger position %d: %w", l.Ref, l.Seq, charting.ErrNotFound)
			}
			items = append(items, WatchItem{Link: l, Entry: e})
			i++
		case charting.LinkSamples:
			// Read the blocks of the run of sample links that starts here,
			// a few at a time, so one read never holds many large blocks.
			j := i
			for j < len(links) && j-i < watchBlockChunk && links[j].Kind == charting.LinkSamples {
				j++
			}
			got, n, err := s.watchSamples(ctx, caseID, links[i:j], maxSamples-samples)
			if err != nil {
				return nil, err
			}
			items = append(items, got...)
			samples += n
			i += len(got)
			if samples >= maxSamples {
				return items, nil
			}
		default:
			items = append(items, WatchItem{Link: l})
			i++
		}
	}
	return items, nil
}

// watchEntries reads the entries the links record, in one read.
func (s *Store) watchEntries(ctx context.Context, caseID uuid.UUID, links []charting.Link) (map[uuid.UUID]*charting.Entry, error) {
	var ids []uuid.UUID
	for _, l := range links {
		switch l.Kind {
		case charting.LinkEntry, charting.LinkCorrection, charting.LinkAddendum:
			id, err := uuid.Parse(l.Ref)
			if err != nil {
				return nil, fmt.Errorf("watch: ledger position %d: entry ref %q is not an id", l.Seq, l.Ref)
			}
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	entries, err := s.b.ReadEntries(ctx, caseID, ids)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	return entries, nil
}

// watchBlockChunk is how many sample blocks WatchContent reads at once.
const watchBlockChunk = 16

// watchSamples decodes the batches of sample links, stopping after the one
// that reaches budget samples. It returns the items and their sample count.
func (s *Store) watchSamples(ctx context.Context, caseID uuid.UUID, links []charting.Link, budget int) ([]WatchItem, int, error) {
	keys := make([]SampleKey, len(links))
	for i, l := range links {
		src, seq, err := parseSampleRef(l.Ref)
		if err != nil {
			return nil, 0, fmt.Errorf("watch: ledger position %d: %w", l.Seq, err)
		}
		keys[i] = SampleKey{CaseID: caseID, SourceID: src, Seq: seq}
	}
	blocks, err := s.b.ReadSampleBlocks(ctx, keys)
	if err != nil {
		return nil, 0, fmt.Errorf("watch: %w", err)
	}
	var items []WatchItem
	n := 0
	for i, k := range keys {
		block, ok := blocks[k]
		if !ok {
			return nil, 0, fmt.Errorf("watch: batch %s of ledger position %d: %w", links[i].Ref, links[i].Seq, charting.ErrNotFound)
		}
		series, err := samplecodec.DecodeBlock(block)
		if err != nil {
			return nil, 0, fmt.Errorf("watch: batch %s: %w", links[i].Ref, err)
		}
		for _, sr := range series {
			n += sr.Len()
		}
		items = append(items, WatchItem{Link: links[i], SourceID: k.SourceID, Samples: series})
		if n >= budget {
			break
		}
	}
	return items, n, nil
}

// parseSampleRef splits a sample link's ref (charting.SampleRef) into source
// and sequence. Source ids may themselves contain "/", so the sequence is
// what follows the last one.
func parseSampleRef(ref string) (string, int64, error) {
	i := strings.LastIndexByte(ref, '/')
	if i <= 0 {
		return "", 0, fmt.Errorf("sample link ref %q has no sequence", ref)
	}
	seq, err := strconv.ParseInt(ref[i+1:], 10, 64)
	if err != nil || seq < 1 {
		return "", 0, fmt.Errorf("sample link ref %q has no valid sequence", ref)
	}
	return ref[:i], seq, nil
}

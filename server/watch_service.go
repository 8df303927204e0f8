package server

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// WatchCase limits and defaults.
const (
	// DefaultWatchPoll is how often a watcher reads the ledger when nothing
	// woke it: the bound on how late it sees a write committed by another
	// server over the same database (this server's own writes wake it at
	// once).
	DefaultWatchPoll = time.Second
	// defaultBucketWidthMs is the trend bucket width when the request has
	// none: 5 s, the resolution of a bypass trend display.
	defaultBucketWidthMs = 5000
	minBucketWidthMs     = 100
	maxBucketWidthMs     = 3_600_000
	// watchPageLinks and watchPageSamples bound one read, and so one
	// message and a watcher's memory: at most this many ledger links, and
	// the batches holding about this many samples.
	watchPageLinks   = 256
	watchPageSamples = 50_000
)

// WatchCase streams a case's committed writes from a ledger position. The
// position is the case's ledger sequence: every write of a case appends one
// link under the case's lock, in the transaction that stores the datum, so
// links commit in sequence order and reading the ledger after a position
// finds exactly the writes not yet delivered — on any server, whoever
// committed them. Nothing is buffered per watcher: each read takes one page
// from the store and sends it before the next, so a slow watcher holds the
// server in Send (gRPC flow control) instead of growing a queue.
func (s *chartingService) WatchCase(req *pb.WatchCaseRequest, stream grpc.ServerStreamingServer[pb.WatchCaseResponse]) error {
	ctx := stream.Context()
	w, err := s.newWatcher(ctx, req)
	if err != nil {
		return s.h.fail(err)
	}
	defer w.stop()
	if err := w.run(ctx, stream.Send); err != nil {
		return s.h.fail(err)
	}
	return nil
}

// watcher is one WatchCase stream's state: where it is and what it wants.
type watcher struct {
	st       *store.Store
	caseID   uuid.UUID
	pos      int64
	widthMs  int64
	channels []string
	poll     time.Duration
	wake     <-chan struct{}
	stopping <-chan struct{} // the server is shutting down
	stop     func()
	signed   bool // the case was signed when the watch began
	// c is the case as read when the watch began: its device window's
	// start (Case.Begins) never changes.
	c *charting.Case
}

// newWatcher validates the request, subscribes to the case's commits and
// checks the case and the position. It subscribes before reading the case,
// so a write committed between the two still wakes it.
func (s *chartingService) newWatcher(ctx context.Context, req *pb.WatchCaseRequest) (*watcher, error) {
	var p parser
	w := &watcher{st: s.h.store, poll: cmp.Or(s.watchPoll, DefaultWatchPoll), stopping: s.stopping}
	w.caseID = p.id("case_id", req.GetCaseId(), true)
	if w.pos = req.GetAfterPosition(); w.pos < 0 {
		p.v.Add("after_position", "must be 0 or a position received from this case")
	}
	switch w.widthMs = req.GetBucketWidthMs(); {
	case w.widthMs == 0:
		w.widthMs = defaultBucketWidthMs
	case w.widthMs < minBucketWidthMs || w.widthMs > maxBucketWidthMs:
		p.v.Add("bucket_width_ms", "must be 0 (5000) or %d to %d", minBucketWidthMs, maxBucketWidthMs)
	}
	for i, ch := range req.GetChannels() {
		if _, ok := s.h.store.Catalogue().Lookup(ch); !ok {
			p.v.Add(fmt.Sprintf("channels[%d]", i), "unknown channel %q", ch)
		}
	}
	w.channels = req.GetChannels()
	if err := p.err(); err != nil {
		return nil, err
	}
	w.wake, w.stop = s.h.store.Commits().Subscribe(w.caseID)
	c, err := s.h.store.GetCase(ctx, w.caseID)
	if err != nil {
		w.stop()
		return nil, err
	}
	if w.pos > c.Head.Seq {
		w.stop()
		p.v.Add("after_position", "beyond the case's position %d", c.Head.Seq)
		return nil, p.err()
	}
	w.signed = c.Status == charting.StatusSigned
	w.c = c
	return w, nil
}

// run sends pages until the case is signed and delivered, or ctx ends.
func (w *watcher) run(ctx context.Context, send func(*pb.WatchCaseResponse) error) error {
	live := false
	announced := false // a caught_up message was sent
	var lastSamples time.Time
	for {
		select {
		case <-w.stopping: // also between backlog pages, which never wait
			return errShuttingDown
		default:
		}
		links, err := w.st.WatchLinks(ctx, w.caseID, w.pos, watchPageLinks)
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		full := len(links) == watchPageLinks
		if len(links) == 0 {
			if w.signed {
				// Watching a signed case from its end: nothing will come.
				return send(&pb.WatchCaseResponse{Position: w.pos, CaughtUp: true, Status: pb.CaseStatus_CASE_STATUS_SIGNED, Final: true})
			}
			live = true
			if !announced {
				// Nothing to deliver (a resume with nothing missed, or a
				// backlog that ended on a page boundary): say so, so a
				// display stops showing "loading".
				if err := send(&pb.WatchCaseResponse{Position: w.pos, CaughtUp: true}); err != nil {
					return err
				}
				announced = true
			}
			if err := w.wait(ctx, w.poll); err != nil {
				return err
			}
			continue
		}
		// Live trends go out at most once per bucket width; entries and
		// lifecycle changes at once (with the samples before them).
		if live && !full && onlySamples(links) {
			if d := time.Until(lastSamples.Add(time.Duration(w.widthMs) * time.Millisecond)); d > 0 {
				if err := w.wait(ctx, min(d, w.poll)); err != nil {
					return err
				}
				continue
			}
		}
		// The signature ends the watch: nothing after it belongs to the
		// live case (addenda are read with ListEntries).
		if i := slices.IndexFunc(links, func(l charting.Link) bool { return l.Kind == charting.LinkSignature }); i >= 0 {
			links, full = links[:i+1], false
		}
		items, err := w.st.WatchContent(ctx, w.caseID, links, watchPageSamples)
		if err != nil {
			return err
		}
		msg := w.message(items)
		msg.CaughtUp = len(items) == len(links) && !full
		if len(msg.Samples) > 0 {
			lastSamples = time.Now()
		}
		if err := send(msg); err != nil {
			return err
		}
		w.pos = msg.Position
		live = live || msg.CaughtUp
		announced = announced || msg.CaughtUp
		if msg.Final {
			return nil
		}
	}
}

// wait returns after a commit wake, after d, or with ctx's error.
func (w *watcher) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stopping:
		return errShuttingDown
	case <-w.wake:
	case <-t.C:
	}
	return nil
}

// errShuttingDown ends watches when the server shuts down. Unavailable
// tells clients to resume from their last position, on another server.
var errShuttingDown = status.Error(codes.Unavailable, "server shutting down: resume the watch from the last position received")

func onlySamples(links []charting.Link) bool {
	for _, l := range links {
		if l.Kind != charting.LinkSamples {
			return false
		}
	}
	return true
}

// message renders a page of items: samples reduced to trend buckets per
// channel and source, entries in ledger order, the latest lifecycle change.
//
// Samples timed outside the case's device window (Case.DeviceWindow of
// their batch's receipt, the link's time) are left out of the buckets, so
// a clock reset to 1970 never makes a 1970 bucket on a display, and the
// message names the source in implausible_clocks instead. Readings outside
// a channel's plausible range are counted per bucket and kept out of its
// statistics, as in QuerySamples.
func (w *watcher) message(items []store.WatchItem) *pb.WatchCaseResponse {
	msg := &pb.WatchCaseResponse{Position: items[len(items)-1].Link.Seq}
	trends := make(map[store.SeriesKey]*charting.Trend)
	clocks := make(map[string]*pb.ImplausibleClock)
	cat := w.st.Catalogue()
	for _, it := range items {
		switch {
		case it.Entry != nil:
			msg.Entries = append(msg.Entries, entryOut(it.Entry))
		case it.Link.Kind == charting.LinkSamples:
			win := w.c.DeviceWindow(it.Link.RecordedAt)
			for _, sr := range it.Samples {
				if len(w.channels) > 0 && !slices.Contains(w.channels, sr.Channel) {
					continue
				}
				if in := sr.Within(win); in.Len() < sr.Len() {
					noteImplausible(clocks, it.SourceID, sr, win)
					sr = in
				}
				if sr.Len() == 0 {
					continue
				}
				k := store.SeriesKey{Channel: sr.Channel, SourceID: it.SourceID}
				if trends[k] == nil {
					trends[k] = charting.NewTrend(w.widthMs).Flagging(cat.Flagging(sr.Channel))
				}
				trends[k].Add(sr)
			}
		case it.Link.Kind == charting.LinkCaseClosed:
			msg.Status = pb.CaseStatus_CASE_STATUS_CLOSED
		case it.Link.Kind == charting.LinkSignature:
			msg.Status, msg.Final = pb.CaseStatus_CASE_STATUS_SIGNED, true
		}
	}
	for _, k := range sortedKeys(trends) {
		c, _ := cat.Lookup(k.Channel)
		bs := &pb.BucketSeries{Channel: k.Channel, SourceId: k.SourceID, Unit: c.Unit, BucketWidthMs: w.widthMs}
		for _, b := range trends[k].Buckets() {
			bs.Buckets = append(bs.Buckets, bucketOut(b))
		}
		msg.Samples = append(msg.Samples, bs)
	}
	for _, src := range slices.Sorted(maps.Keys(clocks)) {
		msg.ImplausibleClocks = append(msg.ImplausibleClocks, clocks[src])
	}
	return msg
}

// noteImplausible adds the samples of sr outside win to its source's
// report.
func noteImplausible(clocks map[string]*pb.ImplausibleClock, source string, sr charting.Series, win charting.TimeWindow) {
	for _, t := range sr.TimesMs {
		if win.ContainsMs(t) {
			continue
		}
		c := clocks[source]
		if c == nil {
			c = &pb.ImplausibleClock{SourceId: source, FirstUnixMs: t, LastUnixMs: t}
			clocks[source] = c
		}
		c.Samples++
		c.FirstUnixMs, c.LastUnixMs = min(c.FirstUnixMs, t), max(c.LastUnixMs, t)
	}
}

package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
)

// watchRun is a WatchCase call whose messages a goroutine collects.
type watchRun struct {
	t      *testing.T
	cancel context.CancelFunc
	mu     sync.Mutex
	msgs   []*pb.WatchCaseResponse
	err    error // how the stream ended; nil while it runs
	done   chan struct{}
}

// watch starts watching on c with req.
func watch(t *testing.T, c pb.ChartingServiceClient, req *pb.WatchCaseRequest) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(as(reviewer))
	s, err := c.WatchCase(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("watch case: %v", err)
	}
	w := &watchRun{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			m, err := s.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// position is the position of the last message received, 0 before any.
func (w *watchRun) position() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) == 0 {
		return 0
	}
	return w.msgs[len(w.msgs)-1].GetPosition()
}

// waitFor waits until the watcher has received position pos.
func (w *watchRun) waitFor(pos int64) {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for w.position() < pos {
		select {
		case <-w.done:
			w.t.Fatalf("watch ended with %v at position %d, want position %d", w.err, w.position(), pos)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("watcher at position %d after 15 s, want %d", w.position(), pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop disconnects and returns the messages received.
func (w *watchRun) stop() []*pb.WatchCaseResponse {
	w.cancel()
	<-w.done
	return w.messages()
}

func (w *watchRun) messages() []*pb.WatchCaseResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*pb.WatchCaseResponse(nil), w.msgs...)
}

// ended waits for the server to end the stream and returns how.
func (w *watchRun) ended() error {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		w.t.Fatalf("stream still open 15 s after the case was signed")
	}
	return w.err
}

// tally counts what a watcher received: samples per channel (merged by
// bucket), entries by id (each must come once), statuses seen.
type tally struct {
	samples  map[string]int64
	buckets  map[string]map[int64]*pb.Bucket
	entries  map[string]int
	statuses []pb.CaseStatus
	final    int
	last     int64
}

func newTally() *tally {
	return &tally{samples: map[string]int64{}, buckets: map[string]map[int64]*pb.Bucket{}, entries: map[string]int{}}
}

// add counts msgs, failing on a position that does not advance.
func (tl *tally) add(t *testing.T, msgs []*pb.WatchCaseResponse) {
	t.Helper()
	for _, m := range msgs {
		empty := len(m.GetEntries())+len(m.GetSamples()) == 0 && m.GetStatus() == pb.CaseStatus_CASE_STATUS_UNSPECIFIED
		if m.GetPosition() < tl.last || (m.GetPosition() == tl.last && !(empty && (m.GetFinal() || m.GetCaughtUp()))) {
			t.Fatalf("position %d after %d: positions must advance", m.GetPosition(), tl.last)
		}
		tl.last = m.GetPosition()
		for _, s := range m.GetSamples() {
			if tl.buckets[s.GetChannel()] == nil {
				tl.buckets[s.GetChannel()] = map[int64]*pb.Bucket{}
			}
			for _, b := range s.GetBuckets() {
				tl.samples[s.GetChannel()] += b.GetCount()
				have := tl.buckets[s.GetChannel()][b.GetStartUnixMs()]
				if have == nil {
					tl.buckets[s.GetChannel()][b.GetStartUnixMs()] = b
					continue
				}
				n := have.GetCount() + b.GetCount()
				tl.buckets[s.GetChannel()][b.GetStartUnixMs()] = &pb.Bucket{StartUnixMs: b.GetStartUnixMs(), Count: n,
					Min: math.Min(have.GetMin(), b.GetMin()), Max: math.Max(have.GetMax(), b.GetMax()),
					Mean: (have.GetMean()*float64(have.GetCount()) + b.GetMean()*float64(b.GetCount())) / float64(n)}
			}
		}
		for _, e := range m.GetEntries() {
			tl.entries[e.GetEntryId()]++
		}
		if m.GetStatus() != pb.CaseStatus_CASE_STATUS_UNSPECIFIED {
			tl.statuses = append(tl.statuses, m.GetStatus())
		}
		if m.GetFinal() {
			tl.final++
		}
	}
}

// wantEntries fails unless exactly ids were received, each once.
func (tl *tally) wantEntries(t *testing.T, ids ...string) {
	t.Helper()
	if len(tl.entries) != len(ids) {
		t.Fatalf("received %d distinct entries %v, want %d", len(tl.entries), tl.entries, len(ids))
	}
	for _, id := range ids {
		if tl.entries[id] != 1 {
			t.Fatalf("entry %s received %d times, want once", id, tl.entries[id])
		}
	}
}

func (tl *tally) wantSamples(t *testing.T, perChannel int64) {
	t.Helper()
	for _, ch := range []string{"pump_flow", "temp_arterial_outlet"} {
		if tl.samples[ch] != perChannel {
			t.Fatalf("%s: received %d samples, want %d", ch, tl.samples[ch], perChannel)
		}
	}
}

// head is the case's current ledger position.
func (e *env) head(id string) int64 {
	e.t.Helper()
	return e.getCase(id).GetLedgerHead().GetSequence()
}

// correct supersedes entry with replacement, or voids it when nil.
func (e *env) correct(caseID, entryID string, replacement *pb.Entry) string {
	e.t.Helper()
	id := uuid.NewString()
	req := &pb.CorrectEntryRequest{CaseId: caseID, EntryId: id, SupersedesEntryId: entryID, Reason: "charted on the wrong line",
		Void: replacement == nil, Replacement: replacement}
	if _, err := e.charting.CorrectEntry(as(perfusionist), req); err != nil {
		e.t.Fatalf("correct entry: %v", err)
	}
	return id
}

func (e *env) closeAndSign(id string) {
	e.t.Helper()
	if _, err := e.cases.CloseCase(as(perfusionist), &pb.CloseCaseRequest{CaseId: id}); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	if _, err := e.cases.SignCase(as(perfusionist), &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"}); err != nil {
		e.t.Fatalf("sign: %v", err)
	}
}

// slowPoll makes watchers rely on the commit wake: a test that passes with
// it proves the wake, not the poll, delivered the writes.
func slowPoll(c *server.Config) { c.WatchPoll = time.Hour }

// TestWatchCaseLiveResume watches a case live, disconnects mid-case, writes
// more, resumes from the last position and checks that every sample, entry,
// correction and void arrives exactly once, then that signing ends the
// stream.
func TestWatchCaseLiveResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, slowPoll)
		caseID := e.createCase("OR-W1").GetCaseId()
		now := time.Now().Add(-time.Hour).Truncate(time.Second)
		t0 := now.UnixMilli()
		tl := newTally()

		w := watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: 100})
		w.waitFor(e.head(caseID)) // the backlog: creation and details

		// Phase 1, live: an entry, three batches, a correction.
		ss := openStream(t, e.charting, caseID, "hlm-1")
		e1 := e.recordEntry(drugEntry(caseID, 30000, now)).GetEntry().GetEntryId()
		for seq := int64(1); seq <= 3; seq++ {
			ss.send(flowBatch("hlm-1", seq, t0+(seq-1)*5000, 5))
		}
		c1 := e.correct(caseID, e1, drugEntry(caseID, 25000, now))
		w.waitFor(e.head(caseID))
		tl.add(t, w.stop())
		tl.wantEntries(t, e1, c1)
		tl.wantSamples(t, 15)

		// Phase 2, nobody watching: more of everything.
		for seq := int64(4); seq <= 6; seq++ {
			ss.send(flowBatch("hlm-1", seq, t0+(seq-1)*5000, 5))
		}
		e2 := e.recordEntry(noteEntry(caseID, "going on bypass", now.Add(time.Minute))).GetEntry().GetEntryId()
		v2 := e.correct(caseID, e2, nil)
		ss.close()

		// Phase 3: resume from the last position received.
		w = watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: tl.last, BucketWidthMs: 100})
		w.waitFor(e.head(caseID))
		resumed := w.messages()
		tl.add(t, resumed)
		if !resumed[len(resumed)-1].GetCaughtUp() {
			t.Errorf("last backlog message not marked caught_up")
		}
		tl.wantEntries(t, e1, c1, e2, v2)
		tl.wantSamples(t, 30)

		// Phase 4: closing and signing reach the watcher, which then ends.
		e.closeAndSign(caseID)
		if err := w.ended(); !errors.Is(err, io.EOF) {
			t.Fatalf("stream after signing ended with %v, want a clean end", err)
		}
		tl.add(t, w.messages()[len(resumed):])
		// A message carries the status after the lifecycle changes in its
		// positions: closed then signed, or signed alone when both had
		// committed before the watcher read them.
		closedSigned := fmt.Sprint([]pb.CaseStatus{pb.CaseStatus_CASE_STATUS_CLOSED, pb.CaseStatus_CASE_STATUS_SIGNED})
		signedOnly := fmt.Sprint([]pb.CaseStatus{pb.CaseStatus_CASE_STATUS_SIGNED})
		if got := fmt.Sprint(tl.statuses); (got != closedSigned && got != signedOnly) || tl.final != 1 {
			t.Fatalf("statuses %v, final %d; want closed then signed (or signed alone), one final", tl.statuses, tl.final)
		}
		if head := e.head(caseID); tl.last != head {
			t.Fatalf("last position %d, case head %d", tl.last, head)
		}

		// A display opening the signed case gets the whole case and the end.
		all := newTally()
		w = watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID})
		if err := w.ended(); !errors.Is(err, io.EOF) {
			t.Fatalf("watching a signed case ended with %v, want a clean end", err)
		}
		all.add(t, w.messages())
		all.wantEntries(t, e1, c1, e2, v2)
		all.wantSamples(t, 30)
		if all.final != 1 {
			t.Fatalf("%d final messages, want 1", all.final)
		}
		// Resuming at the very end of a signed case: just the end.
		w = watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: tl.last})
		if err := w.ended(); !errors.Is(err, io.EOF) {
			t.Fatalf("resuming at the end of a signed case ended with %v", err)
		}
		if m := w.messages(); len(m) != 1 || !m[0].GetFinal() || m[0].GetPosition() != tl.last {
			t.Fatalf("resuming at the end of a signed case: got %v, want one final message at %d", m, tl.last)
		}
	})
}

// TestWatchCaseDownsampling checks the trend buckets: aligned to the
// requested width, with exact count, min, max and mean once merged, and
// live sample messages no more often than once per width.
func TestWatchCaseDownsampling(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, slowPoll)
		caseID := e.createCase("OR-W2").GetCaseId()
		const width = 10_000
		t0 := time.Now().Add(-time.Hour).UnixMilli() / width * width
		ss := openStream(t, e.charting, caseID, "hlm-1")
		var batches []*pb.SampleBatch
		for seq := int64(1); seq <= 6; seq++ { // 60 s of 1 Hz samples, batches of 10
			batches = append(batches, flowBatch("hlm-1", seq, t0+(seq-1)*10_000, 10))
			ss.send(batches[len(batches)-1])
		}
		w := watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: width, Channels: []string{"pump_flow"}})
		w.waitFor(e.head(caseID))
		tl := newTally()
		tl.add(t, w.stop())
		if _, ok := tl.buckets["temp_arterial_outlet"]; ok {
			t.Fatalf("an unrequested channel was sent")
		}
		got := tl.buckets["pump_flow"]
		if len(got) != 6 {
			t.Fatalf("%d buckets, want 6", len(got))
		}
		for k, batch := range batches {
			vals := batch.GetSeries()[0].GetValues()
			lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
			for _, v := range vals {
				lo, hi, sum = math.Min(lo, v), math.Max(hi, v), sum+v
			}
			bk := got[t0+int64(k)*width]
			if bk == nil || bk.GetCount() != 10 || bk.GetMin() != lo || bk.GetMax() != hi || math.Abs(bk.GetMean()-sum/10) > 1e-9 {
				t.Fatalf("bucket %d: got %v, want count 10 min %v max %v mean %v", k, bk, lo, hi, sum/10)
			}
		}

		// Live: 20 batches committed as fast as possible, watched with 1 s
		// buckets, arrive in at most one sample message per second (plus
		// the first, sent at once).
		w = watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: e.head(caseID), BucketWidthMs: 1000})
		began := time.Now()
		for seq := int64(7); seq <= 26; seq++ {
			ss.send(flowBatch("hlm-1", seq, t0+(seq-1)*10_000, 1))
		}
		w.waitFor(e.head(caseID))
		elapsed := time.Since(began)
		live := newTally()
		msgs := w.stop()
		live.add(t, msgs)
		live.wantSamples(t, 20)
		if limit := int(elapsed/time.Second) + 2; len(msgs) > limit {
			t.Fatalf("%d sample messages in %v with 1 s buckets, want at most %d", len(msgs), elapsed, limit)
		}
		ss.close()
	})
}

// TestWatchCaseOtherServer writes through one server and watches through
// another over the same database: the PostgreSQL relay, or on SQLite the
// poll, must find the writes, each exactly once.
func TestWatchCaseOtherServer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		// On PostgreSQL the servers relay commits (NOTIFY/LISTEN): with a
		// poll of an hour, only the relay can deliver in time.
		poll := 50 * time.Millisecond
		if b.Name() == "postgres" {
			poll = time.Hour
		}
		watching := start(t, b, func(c *server.Config) { c.WatchPoll = poll })
		writing := start(t, b)
		caseID := writing.createCase("OR-W3").GetCaseId()
		w := watch(t, watching.charting, &pb.WatchCaseRequest{CaseId: caseID})
		var ids []string
		for i := range 5 {
			ids = append(ids, writing.recordEntry(noteEntry(caseID, fmt.Sprintf("note %d", i), time.Now())).GetEntry().GetEntryId())
		}
		w.waitFor(writing.head(caseID))
		tl := newTally()
		tl.add(t, w.stop())
		tl.wantEntries(t, ids...)
	})
}

// TestWatchCaseManyWatchers has many displays watch one case while it is
// written; each gets everything exactly once.
func TestWatchCaseManyWatchers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, slowPoll)
		caseID := e.createCase("OR-W4").GetCaseId()
		const watchers = 25
		runs := make([]*watchRun, watchers)
		for i := range runs {
			runs[i] = watch(t, e.dial2(), &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: 100})
		}
		t0 := time.Now().Add(-time.Hour).UnixMilli()
		ss := openStream(t, e.charting, caseID, "hlm-1")
		var ids []string
		for seq := int64(1); seq <= 20; seq++ {
			ss.send(flowBatch("hlm-1", seq, t0+(seq-1)*3000, 3))
			if seq%4 == 0 {
				ids = append(ids, e.recordEntry(noteEntry(caseID, "note", time.Now())).GetEntry().GetEntryId())
			}
		}
		ss.close()
		head := e.head(caseID)
		for i, w := range runs {
			w.waitFor(head)
			tl := newTally()
			tl.add(t, w.stop())
			tl.wantEntries(t, ids...)
			tl.wantSamples(t, 60)
			if tl.last != head {
				t.Fatalf("watcher %d at %d, want %d", i, tl.last, head)
			}
		}
	})
}

// dial2 opens another connection and returns a charting client on it, so
// watchers do not share one HTTP/2 connection.
func (e *env) dial2() pb.ChartingServiceClient { return pb.NewChartingServiceClient(e.dial()) }

// TestWatchCaseBadInput checks the validation of WatchCase requests.
func TestWatchCaseBadInput(t *testing.T) {
	e := start(t, sqliteBackend(t))
	caseID := e.createCase("OR-W5").GetCaseId()
	head := e.head(caseID)
	recv := func(req *pb.WatchCaseRequest) error {
		ctx, cancel := context.WithTimeout(as(reviewer), 10*time.Second)
		defer cancel()
		s, err := e.charting.WatchCase(ctx, req)
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	for _, tc := range []struct {
		name  string
		req   *pb.WatchCaseRequest
		field string
	}{
		{"no case", &pb.WatchCaseRequest{}, "case_id"},
		{"bad case id", &pb.WatchCaseRequest{CaseId: "not-a-uuid"}, "case_id"},
		{"negative position", &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: -1}, "after_position"},
		{"position beyond head", &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: head + 1}, "after_position"},
		{"bucket too narrow", &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: 99}, "bucket_width_ms"},
		{"bucket too wide", &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: 3_600_001}, "bucket_width_ms"},
		{"negative bucket", &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: -5}, "bucket_width_ms"},
		{"unknown channel", &pb.WatchCaseRequest{CaseId: caseID, Channels: []string{"pump_flow", "warp_drive"}}, "channels[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantFieldViolation(t, tc.name, recv(tc.req), tc.field) })
	}
	wantCode(t, "unknown case", recv(&pb.WatchCaseRequest{CaseId: uuid.NewString()}), codes.NotFound)
}

// TestWatchCaseShutdown checks that a server shutting down ends its
// watches with Unavailable (resume elsewhere) instead of holding the
// graceful stop until its deadline.
func TestWatchCaseShutdown(t *testing.T) {
	e := start(t, sqliteBackend(t))
	caseID := e.createCase("OR-W6").GetCaseId()
	w := watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID})
	w.waitFor(e.head(caseID))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	e.srv.Shutdown(ctx)
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("shutdown with a watcher took %v: the watch held the graceful stop", took)
	}
	wantCode(t, "watch at shutdown", w.ended(), codes.Unavailable)
}

// TestWatchCaseCaughtUpAnnounced checks that a watcher with nothing to
// catch up on is told so at once, and that the backlog's end is marked
// when it falls on a page boundary.
func TestWatchCaseCaughtUpAnnounced(t *testing.T) {
	e := start(t, sqliteBackend(t), slowPoll)
	caseID := e.createCase("OR-W7").GetCaseId()
	head := e.head(caseID)
	w := watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, AfterPosition: head})
	deadline := time.Now().Add(10 * time.Second)
	for len(w.messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if m := w.messages(); len(m) != 1 || !m[0].GetCaughtUp() || m[0].GetPosition() != head || len(m[0].GetEntries()) != 0 {
		t.Fatalf("resume with nothing missed: got %v, want one caught_up message at %d", m, head)
	}
	w.stop()

	// 254 more links make 256: exactly one full page of backlog.
	for i := range 254 {
		e.recordEntry(noteEntry(caseID, fmt.Sprint("n", i), time.Now()))
	}
	if h := e.head(caseID); h != 256 {
		t.Fatalf("head %d, want 256 (one page)", h)
	}
	w = watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID})
	w.waitFor(256)
	deadline = time.Now().Add(10 * time.Second)
	for {
		m := w.messages()
		if last := m[len(m)-1]; last.GetCaughtUp() && last.GetPosition() == 256 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog of one full page never marked caught_up: %d messages", len(m))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package perfusion

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

var testChannels = []string{"pump_flow", "arterial_line_pressure", "temp_arterial_outlet"}

// gen makes deterministic device data: every 10 ms one sample per channel,
// a few marked invalid, some values exact decimals and some not.
type gen struct {
	t0 int64
	k  int64
}

func newGen() *gen { return &gen{t0: time.Now().Add(-12 * time.Hour).UnixMilli()} }

func (g *gen) next(n int) []*pb.SampleSeries {
	out := make([]*pb.SampleSeries, len(testChannels))
	for i, ch := range testChannels {
		out[i] = &pb.SampleSeries{Channel: ch}
	}
	for j := 0; j < n; j++ {
		k := g.k
		g.k++
		ms := g.t0 + k*10
		flow := float64(250+k%300) / 100
		if k%17 == 0 {
			flow = 3.14159265358979 // not a decimal at the channel's resolution
		}
		vals := []float64{flow, float64(150 + k%100), float64(300+k%70) / 10}
		for i := range out {
			out[i].OccurredAtUnixMs = append(out[i].OccurredAtUnixMs, ms)
			out[i].Values = append(out[i].Values, vals[i])
		}
		if k%53 == 0 { // the pressure transducer was being zeroed
			out[1].Values[len(out[1].Values)-1] = -999
			out[1].InvalidIndexes = append(out[1].InvalidIndexes, int32(len(out[1].Values)-1))
		}
	}
	return out
}

// TestStreamerSurvivesNetworkCutsAndGatewayCrashes streams a few thousand
// batches through a proxy that cuts every connection and refuses new ones
// at random moments, while the gateway "crashes" (the streamer is
// abandoned without flushing) and restarts on the same spool several
// times. Then it counts every sample on the server: none missing, none
// twice, none altered, and the record verifies.
func TestStreamerSurvivesNetworkCutsAndGatewayCrashes(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c := dialTest(t, px.addr())
	direct := dialTest(t, srv.addr)
	caseID := newCase(t, direct)
	const source = "hlm-1"
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	opts := StreamerOptions{MaxBatchSamples: 30, FlushInterval: 20 * time.Millisecond, Window: 16,
		AckTimeout: 3 * time.Second, SegmentBytes: 16 << 10}

	var total Stats
	addStats := func(s Stats) {
		total.Recovered += s.Recovered
		total.Spooled += s.Spooled
		total.Sent += s.Sent
		total.Resent += s.Resent
		total.Acked += s.Acked
		total.Duplicates += s.Duplicates
		total.Reconnects += s.Reconnects
		total.DeadLettered += s.DeadLettered
	}
	open := func() *SampleStreamer {
		o := opts
		o.Durable = rng.IntN(2) == 0
		o.OnDeadLetter = func(d DeadLetter) { t.Errorf("dead letter %d: %v", d.Sequence, d.Err) }
		s, err := OpenSampleStreamer(context.Background(), c, caseID, source, dir, o)
		if err != nil {
			t.Fatalf("OpenSampleStreamer: %v", err)
		}
		return s
	}

	// Chaos: cut or black out the network at random, until stopped.
	stopChaos := make(chan struct{})
	var chaos sync.WaitGroup
	var outages int
	chaos.Add(1)
	go func() {
		defer chaos.Done()
		rng := rand.New(rand.NewPCG(seed, 2))
		for {
			select {
			case <-stopChaos:
				px.restore()
				return
			case <-time.After(time.Duration(30+rng.IntN(150)) * time.Millisecond):
			}
			if rng.IntN(10) < 6 {
				px.cut()
				continue
			}
			px.refuse()
			outages++
			select {
			case <-stopChaos:
			case <-time.After(time.Duration(20+rng.IntN(250)) * time.Millisecond):
			}
			px.restore()
		}
	}()

	want := ledger{}
	g := newGen()
	s := open()
	const ticks, crashes = 30000, 5
	crashAt := map[int]bool{}
	for len(crashAt) < crashes {
		crashAt[200+rng.IntN(ticks/12-200)] = true
	}
	ctx := context.Background()
	for sends := 0; g.k < ticks; sends++ {
		series := g.next(1 + rng.IntN(24))
		if err := s.Send(ctx, series...); err != nil {
			t.Fatalf("Send: %v", err)
		}
		want.add(source, series...)
		if crashAt[sends] {
			addStats(s.Stats())
			s.abandon() // a crash: nothing flushed, nothing closed cleanly
			s = open()
		}
		time.Sleep(time.Millisecond) // a device's pace, so the chaos lands mid-stream
	}
	close(stopChaos)
	chaos.Wait()

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		t.Fatalf("Close: %v (stats %+v)", err, s.Stats())
	}
	addStats(s.Stats())
	t.Logf("%d samples in %d batches; %d cuts and %d outages, %d crashes; stats over all runs: %+v",
		len(want), total.Spooled, px.cuts, outages, crashes, total)

	got := stored(t, direct, caseID, testChannels)
	if missing, extra, changed, report := diffSamples(want, got); missing+extra+changed > 0 {
		t.Fatalf("%d missing, %d extra, %d altered of %d samples:\n%s", missing, extra, changed, len(want), report)
	}
	v := verify(t, direct, caseID)
	if v.GetSamplesVerified() != int64(len(want)) {
		t.Errorf("VerifyRecord re-read %d samples, sent %d", v.GetSamplesVerified(), len(want))
	}
	// Batches 1..n, each once: a batch open at a crash is cut at recovery,
	// so n may exceed the batches Send cut.
	refs := sampleRefs(t, direct, caseID)
	seen := map[string]bool{}
	for _, r := range refs {
		seen[r] = true
	}
	for i := 1; i <= len(refs); i++ {
		if !seen[fmt.Sprintf("%s/%d", source, i)] {
			t.Fatalf("%d batches on the ledger, but not %s/%d", len(refs), source, i)
		}
	}
	if int64(len(refs)) < total.Spooled || int64(len(refs)) > total.Spooled+crashes {
		t.Errorf("%d batches on the ledger, %d cut by Send and %d crashes", len(refs), total.Spooled, crashes)
	}
	if total.Reconnects == 0 || total.Recovered == 0 {
		t.Errorf("the test did not exercise reconnects (%d) and recovery (%d)", total.Reconnects, total.Recovered)
	}
	// Everything is acknowledged: the spool holds one segment, header only.
	names, _ := filepath.Glob(filepath.Join(dir, segPrefix+"*"))
	if len(names) != 1 {
		t.Errorf("after a clean Close the spool holds %v", names)
	} else if fi, err := os.Stat(names[0]); err != nil || fi.Size() > 200 {
		t.Errorf("the last segment is %d bytes; want just a header (%v)", fi.Size(), err)
	}
}

// activeSegment is the newest segment file of a spool.
func activeSegment(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"+segSuffix))
	if err != nil || len(names) == 0 {
		t.Fatalf("no segments in %s: %v", dir, err)
	}
	slices.Sort(names)
	return names[len(names)-1]
}

// TestTornTailRecovery damages the end of the spool the ways a crash
// mid-write can, reopens, and checks that exactly the intact samples reach
// the server and that the spool keeps working after the repair.
func TestTornTailRecovery(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name string
		// damage changes the active segment; lost is how many of the
		// last Sends it destroys.
		damage func(t *testing.T, path string)
		lost   int
	}{
		{"truncated mid-record", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-7); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"truncated mid-header", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			payloads, _, _ := readFrames(data)
			last := len(data) - len(payloads[len(payloads)-1]) - frameHeaderLen
			if err := os.Truncate(path, int64(last+3)); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"garbage after the last record", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			defer f.Close()
			f.Write([]byte{0x10, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3})
		}, 0},
		{"bit flip in the last record", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			data[len(data)-5] ^= 0x40
			os.WriteFile(path, data, 0o600)
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := newProxy(t, srv.addr)
			px.refuse()
			c := dialTest(t, px.addr())
			caseID := newCase(t, dialTest(t, srv.addr))
			dir := t.TempDir()
			const source = "hlm-torn"
			g := newGen()

			// Each Send (10 ticks × 3 channels) is one record: two fill a batch.
			want := ledger{}
			const sends = 12
			var perSend [][]*pb.SampleSeries
			s, err := OpenSampleStreamer(context.Background(), c, caseID, source, dir, StreamerOptions{MaxBatchSamples: 60, FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < sends; i++ {
				series := g.next(10)
				perSend = append(perSend, series)
				if err := s.Send(context.Background(), series...); err != nil {
					t.Fatal(err)
				}
			}
			s.abandon()
			for _, series := range perSend[:sends-tc.lost] {
				want.add(source, series...)
			}
			tc.damage(t, activeSegment(t, dir))

			s, err = OpenSampleStreamer(context.Background(), c, caseID, source, dir, StreamerOptions{FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if st := s.Stats(); st.Recovered == 0 {
				t.Fatalf("nothing recovered: %+v", st)
			}
			more := g.next(10)
			if err := s.Send(context.Background(), more...); err != nil {
				t.Fatal(err)
			}
			want.add(source, more...)
			// Crash again, to prove records written after the repair are
			// readable, then come back online.
			s.abandon()
			s, err = OpenSampleStreamer(context.Background(), c, caseID, source, dir, StreamerOptions{FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatalf("reopen after repair: %v", err)
			}
			px.restore()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got := stored(t, c, caseID, testChannels)
			if missing, extra, changed, report := diffSamples(want, got); missing+extra+changed > 0 {
				t.Fatalf("%d missing, %d extra, %d altered:\n%s", missing, extra, changed, report)
			}
			verify(t, c, caseID)
		})
	}
}

// TestDeadLetter: a batch the server rejects as invalid goes to the
// dead-letter file and the callback, the batches around it are stored,
// and it is never sent again, not even after a restart.
func TestDeadLetter(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.addr)
	caseID := newCase(t, c)
	dir := t.TempDir()
	const source = "hlm-dl"
	dead := make(chan DeadLetter, 4)
	opts := StreamerOptions{OnDeadLetter: func(d DeadLetter) { dead <- d }}
	s, err := OpenSampleStreamer(context.Background(), c, caseID, source, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := newGen()
	want := ledger{}
	good := func() {
		series := g.next(5)
		if err := s.Send(ctx, series...); err != nil {
			t.Fatal(err)
		}
		want.add(source, series...)
	}
	good()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	bad := g.next(5)
	bad[0].Values[2] = math.Inf(1) // malformed: not a reading (an out-of-range one would be stored, flagged)
	if err := s.Send(ctx, bad...); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush over a rejected batch: %v", err)
	}
	good()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := s.Stats(); st.DeadLettered != 1 || st.Acked != 2 {
		t.Errorf("stats %+v, want 1 dead letter and 2 acks", st)
	}

	var d DeadLetter
	select {
	case d = <-dead:
	default:
		t.Fatal("OnDeadLetter was not called")
	}
	if d.Sequence != 2 || d.CaseID != caseID || d.SourceID != source || status.Code(d.Err) != codes.InvalidArgument || len(FieldViolations(d.Err)) == 0 {
		t.Fatalf("dead letter = seq %d case %s source %s err %v", d.Sequence, d.CaseID, d.SourceID, d.Err)
	}
	kept, err := ReadDeadLetters(dir)
	if err != nil || len(kept) != 1 {
		t.Fatalf("ReadDeadLetters = %d, %v", len(kept), err)
	}
	if k := kept[0]; k.Sequence != 2 || k.CaseID != caseID || k.Batch.GetSequence() != 2 || len(k.Batch.GetSeries()) != 3 ||
		!strings.Contains(FieldViolations(k.Err)[0].GetField(), "values") {
		t.Fatalf("kept dead letter = %+v", k)
	}

	// After a restart the dead letter is not resent and numbering goes on.
	s, err = OpenSampleStreamer(context.Background(), c, caseID, source, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Recovered != 0 {
		t.Fatalf("recovered %d batches after a clean close", st.Recovered)
	}
	good()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if refs := sampleRefs(t, c, caseID); !slices.Equal(refs, []string{source + "/1", source + "/3", source + "/4"}) {
		t.Fatalf("sample batches on the ledger: %v", refs)
	}
	got := stored(t, c, caseID, testChannels)
	if missing, extra, changed, report := diffSamples(want, got); missing+extra+changed > 0 {
		t.Fatalf("%d missing, %d extra, %d altered:\n%s", missing, extra, changed, report)
	}
	verify(t, c, caseID)
}

// TestClosedCaseStopsStreamer: FailedPrecondition stops the streamer with
// that error; the unacknowledged batch stays in the spool.
func TestClosedCaseStopsStreamer(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.addr)
	caseID := newCase(t, c)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenSampleStreamer(ctx, c, caseID, "hlm-1", dir, StreamerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGen()
	if err := s.Send(ctx, g.next(5)...); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: caseID}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, g.next(5)...); err != nil {
		t.Fatal(err)
	}
	err = s.Flush(ctx)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Flush after the case closed = %v, want FailedPrecondition", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed")
	}
	if status.Code(s.Err()) != codes.FailedPrecondition {
		t.Fatalf("Err = %v", s.Err())
	}
	if err := s.Send(ctx, g.next(1)...); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Send after stop = %v", err)
	}
	if err := s.Close(ctx); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Close = %v", err)
	}
	s, err = OpenSampleStreamer(ctx, c, caseID, "hlm-1", dir, StreamerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.abandon()
	if st := s.Stats(); st.Recovered != 1 {
		t.Fatalf("the refused batch is not in the spool: %+v", st)
	}
}

// TestFreshSpoolFollowsServer: a gateway that lost its spool (or a new
// spool for a source the server knows) numbers on after the server's
// position instead of colliding with it, even when it starts offline; the
// old spool, now behind the server, refuses to send.
func TestFreshSpoolFollowsServer(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c := dialTest(t, px.addr())
	caseID := newCase(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const source = "hlm-1"
	g := newGen()
	want := ledger{}
	stream := func(dir string, batches int, offline bool) error {
		if offline {
			px.refuse()
		}
		s, err := OpenSampleStreamer(ctx, c, caseID, source, dir, StreamerOptions{MaxBatchSamples: 30})
		if err != nil {
			return err
		}
		for i := 0; i < batches; i++ {
			series := g.next(10)
			if err := s.Send(ctx, series...); err != nil {
				return err
			}
			want.add(source, series...)
		}
		px.restore()
		return s.Close(ctx)
	}
	first, second := t.TempDir(), t.TempDir()
	if err := stream(first, 3, false); err != nil {
		t.Fatal(err)
	}
	if err := stream(second, 2, true); err != nil {
		t.Fatal(err)
	}
	if refs := sampleRefs(t, c, caseID); !slices.Equal(refs, []string{"hlm-1/1", "hlm-1/2", "hlm-1/3", "hlm-1/4", "hlm-1/5"}) {
		t.Fatalf("batches on the ledger: %v", refs)
	}
	got := stored(t, c, caseID, testChannels)
	if missing, extra, changed, report := diffSamples(want, got); missing+extra+changed > 0 {
		t.Fatalf("%d missing, %d extra, %d altered:\n%s", missing, extra, changed, report)
	}
	// The first spool believes it is at 3; the server is at 5.
	s, err := OpenSampleStreamer(ctx, c, caseID, source, first, StreamerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if !errors.Is(s.Err(), ErrSequenceConflict) {
		t.Fatalf("Err = %v, want ErrSequenceConflict", s.Err())
	}
	s.Close(ctx)
}

// TestSpoolOwnership: one streamer per directory, and a directory holds
// one (case, source).
func TestSpoolOwnership(t *testing.T) {
	c := dialTest(t, "127.0.0.1:1")
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenSampleStreamer(ctx, c, "11111111-1111-4111-8111-111111111111", "a", dir, StreamerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSampleStreamer(ctx, c, "11111111-1111-4111-8111-111111111111", "a", dir, StreamerOptions{}); !errors.Is(err, ErrSpoolLocked) {
		t.Fatalf("second open = %v, want ErrSpoolLocked", err)
	}
	s.abandon()
	if _, err := OpenSampleStreamer(ctx, c, "11111111-1111-4111-8111-111111111111", "b", dir, StreamerOptions{}); !errors.Is(err, ErrSpoolMismatch) {
		t.Fatalf("open for another source = %v, want ErrSpoolMismatch", err)
	}
}

// TestSendRejectsMalformedSeries: shape errors come back at once, with
// field violations, and nothing is spooled.
func TestSendRejectsMalformedSeries(t *testing.T) {
	c := dialTest(t, "127.0.0.1:1")
	s, err := OpenSampleStreamer(context.Background(), c, "11111111-1111-4111-8111-111111111111", "a", t.TempDir(), StreamerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.abandon()
	for _, tc := range []struct {
		series *pb.SampleSeries
		field  string
	}{
		{&pb.SampleSeries{OccurredAtUnixMs: []int64{1}, Values: []float64{1}}, "series[0].channel"},
		{&pb.SampleSeries{Channel: "map", OccurredAtUnixMs: []int64{1, 2}, Values: []float64{1}}, "series[0].values"},
		{&pb.SampleSeries{Channel: "map", OccurredAtUnixMs: []int64{2, 2}, Values: []float64{1, 1}}, "series[0].occurred_at_unix_ms[1]"},
		{&pb.SampleSeries{Channel: "map", OccurredAtUnixMs: []int64{1, 2}, Values: []float64{1, 1}, InvalidIndexes: []int32{2}}, "series[0].invalid_indexes[0]"},
		{&pb.SampleSeries{Channel: "map"}, "series[0].occurred_at_unix_ms"},
	} {
		err := s.Send(context.Background(), tc.series)
		fv := FieldViolations(err)
		if status.Code(err) != codes.InvalidArgument || len(fv) == 0 || fv[0].GetField() != tc.field {
			t.Errorf("Send(%v) = %v, violations %v; want %s", tc.series, err, fv, tc.field)
		}
	}
	if st := s.Stats(); st.Spooled != 0 || s.open != nil {
		t.Fatalf("a rejected Send left data behind: %+v", st)
	}
}

// TestSecondWriterDetected: while this gateway is offline, another spool
// writes the same source; when this one reconnects, the server's position
// covers batches it never sent, and it stops instead of dropping them.
func TestSecondWriterDetected(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	viaProxy, direct := dialTest(t, px.addr()), dialTest(t, srv.addr)
	caseID := newCase(t, direct)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := newGen()
	opts := StreamerOptions{MaxBatchSamples: 30} // one Send of 10 ticks is one batch
	a, err := OpenSampleStreamer(ctx, viaProxy, caseID, "hlm-1", t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if err := a.Send(ctx, g.next(10)...); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	px.refuse()
	// Let the gateway notice the outage, so the next batches wait in its
	// spool unsent (a batch sent into a dying connection counts as sent,
	// and then the check cannot tell: see ErrSequenceConflict).
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if err := a.Send(ctx, g.next(10)...); err != nil {
			t.Fatal(err)
		}
	}
	b, err := OpenSampleStreamer(ctx, direct, caseID, "hlm-1", t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := b.Send(ctx, g.next(10)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	px.restore()
	select {
	case <-a.Done():
	case <-ctx.Done():
		t.Fatal("the streamer did not stop")
	}
	if !errors.Is(a.Err(), ErrSequenceConflict) {
		t.Fatalf("Err = %v, want ErrSequenceConflict", a.Err())
	}
	if st := a.Stats(); st.Pending != 2 {
		t.Fatalf("the unsent batches were not kept: %+v", st)
	}
}

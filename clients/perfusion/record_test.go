package perfusion

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// validSpool is a spool file with one record of each kind.
func validSpool(t testing.TB) []byte {
	samples, err := encodeSamples(samplesRec{local: 3, series: []*pb.SampleSeries{
		{Channel: "map", OccurredAtUnixMs: []int64{1, 2, 3}, Values: []float64{70, 71, 0}, InvalidIndexes: []int32{2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, p := range [][]byte{
		encodeHeader(header{caseID: "c", sourceID: "s", nextLocal: 3, offset: 0}),
		samples,
		encodeBase(7),
		encodeAck(ackRec{lo: 1, hi: 2}),
		encodeDead(deadRec{caseID: "c", local: 4, wire: 11, at: time.Unix(0, 12345), status: []byte{8, 3}, batch: []byte{10, 1, 's'}}),
	} {
		b = appendFrame(b, p)
	}
	return b
}

func TestRecordsRoundTrip(t *testing.T) {
	data := validSpool(t)
	payloads, good, err := readFrames(data)
	if err != nil || good != len(data) || len(payloads) != 5 {
		t.Fatalf("readFrames = %d payloads, good %d of %d, %v", len(payloads), good, len(data), err)
	}
	var got []any
	for _, p := range payloads {
		r, err := decodeRecord(p)
		if err != nil {
			t.Fatalf("decode %q: %v", p[0], err)
		}
		got = append(got, r)
	}
	if h := got[0].(header); h != (header{caseID: "c", sourceID: "s", nextLocal: 3}) {
		t.Errorf("header %+v", h)
	}
	if s := got[1].(samplesRec); s.local != 3 || !proto.Equal(s.series[0], &pb.SampleSeries{Channel: "map", OccurredAtUnixMs: []int64{1, 2, 3}, Values: []float64{70, 71, 0}, InvalidIndexes: []int32{2}}) {
		t.Errorf("samples %+v", s)
	}
	if got[2].(int64) != 7 || got[3].(ackRec) != (ackRec{1, 2}) {
		t.Errorf("base %v ack %v", got[2], got[3])
	}
	if d := got[4].(deadRec); d.caseID != "c" || d.local != 4 || d.wire != 11 || d.at.UnixNano() != 12345 || !bytes.Equal(d.batch, []byte{10, 1, 's'}) {
		t.Errorf("dead %+v", d)
	}

	// Every proper prefix reads as the whole frames it contains plus a
	// torn tail.
	ends := map[int]bool{0: true}
	off := 0
	for _, p := range payloads {
		off += frameHeaderLen + len(p)
		ends[off] = true
	}
	for n := 0; n < len(data); n++ {
		_, good, err := readFrames(data[:n])
		if ends[n] != (err == nil) || good > n {
			t.Fatalf("prefix %d: good %d, err %v", n, good, err)
		}
	}
	// A flipped bit anywhere is caught.
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x08
		if _, good, err := readFrames(bad); err == nil || good > i {
			t.Fatalf("flip at %d: good %d, err %v", i, good, err)
		}
	}
}

// FuzzReadFrames: for any bytes, the reader neither panics nor allocates
// absurdly, the intact prefix re-encodes to exactly the same bytes, and
// decoding any payload fails cleanly or succeeds.
func FuzzReadFrames(f *testing.F) {
	data := validSpool(f)
	f.Add(data)
	f.Add(data[:len(data)-3])
	f.Add(append(bytes.Clone(data), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0))
	f.Add([]byte{})
	f.Add(appendFrame(nil, []byte{kindAck, 2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}))
	f.Fuzz(func(t *testing.T, data []byte) {
		payloads, good, err := readFrames(data)
		if good < 0 || good > len(data) || (err == nil) != (good == len(data)) {
			t.Fatalf("good %d of %d, err %v", good, len(data), err)
		}
		if err != nil && !errors.Is(err, errTornFrame) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		var again []byte
		for _, p := range payloads {
			again = appendFrame(again, p)
			if _, err := decodeRecord(p); err != nil && !errors.Is(err, errBadRecord) {
				t.Fatalf("decode error of the wrong kind: %v", err)
			}
		}
		if !bytes.Equal(again, data[:good]) {
			t.Fatal("re-encoding the intact frames does not give the intact prefix")
		}
	})
}

// plan runs the planner on an open batch (or none) and returns its groups.
func plan(open *builder, next int64, maxSamples int, series ...*pb.SampleSeries) []group {
	p := planner{maxSamples: maxSamples, open: open, next: next}
	p.place(series)
	return p.groups
}

func series(ch string, from, n int64, invalid ...int32) *pb.SampleSeries {
	s := &pb.SampleSeries{Channel: ch, InvalidIndexes: invalid}
	for i := int64(0); i < n; i++ {
		s.OccurredAtUnixMs = append(s.OccurredAtUnixMs, from+i)
		s.Values = append(s.Values, float64(i))
	}
	return s
}

func TestPlanner(t *testing.T) {
	// A long series is split at the size limit; invalid indexes follow
	// their samples.
	g := plan(nil, 1, 4, series("map", 100, 10, 1, 5, 9))
	if len(g) != 3 || !g[0].cut || !g[1].cut || g[2].cut || g[0].local != 1 || g[2].local != 3 {
		t.Fatalf("groups %+v", g)
	}
	if inv := g[1].chunks[0].InvalidIndexes; len(inv) != 1 || inv[0] != 1 {
		t.Fatalf("chunk 2 invalid indexes %v, want [1]", inv)
	}
	if inv := g[2].chunks[0].InvalidIndexes; len(inv) != 1 || inv[0] != 1 || g[2].chunks[0].OccurredAtUnixMs[0] != 108 {
		t.Fatalf("chunk 3 %+v", g[2].chunks[0])
	}

	// Into an open batch while times keep increasing; a time that does not
	// increase cuts it first.
	open := newBuilder(7)
	open.add([]*pb.SampleSeries{series("map", 100, 3)})
	g = plan(open, 8, 100, series("map", 103, 2), series("cvp", 50, 1))
	if len(g) != 1 || g[0].local != 7 || g[0].cut || len(g[0].chunks) != 2 {
		t.Fatalf("append to open: %+v", g)
	}
	g = plan(open, 8, 100, series("map", 102, 2))
	if len(g) != 2 || g[0].local != 7 || !g[0].cut || len(g[0].chunks) != 0 || g[1].local != 8 {
		t.Fatalf("time going back: %+v", g)
	}

	// The builder rebuilds what the planner planned, chunk by chunk.
	b := newBuilder(1)
	for _, gr := range plan(nil, 1, 1000, series("map", 0, 3, 2), series("map", 3, 2, 0)) {
		b.add(gr.chunks)
	}
	if !proto.Equal(b.series[0], &pb.SampleSeries{Channel: "map", OccurredAtUnixMs: []int64{0, 1, 2, 3, 4}, Values: []float64{0, 1, 2, 0, 1}, InvalidIndexes: []int32{2, 3}}) {
		t.Fatalf("rebuilt %v", b.series[0])
	}

	// At most MaxBatchSeries channels per batch.
	var many []*pb.SampleSeries
	for i := 0; i < MaxBatchSeries+1; i++ {
		many = append(many, series("ch"+string(rune('A'+i%26))+string(rune('a'+i/26)), 0, 1))
	}
	g = plan(nil, 1, MaxBatchSamples, many...)
	if len(g) != 2 || len(g[0].chunks) != MaxBatchSeries || len(g[1].chunks) != 1 {
		t.Fatalf("%d groups, first with %d series", len(g), len(g[0].chunks))
	}
}

// FuzzSpoolRecovery frames arbitrary payloads correctly after a valid
// header, so the fuzzer reaches record decoding and recovery behind the
// CRC: opening the spool must fail cleanly or recover batches that make
// sense.
func FuzzSpoolRecovery(f *testing.F) {
	data := validSpool(f)
	payloads, _, _ := readFrames(data)
	for _, p := range payloads[1:] {
		f.Add(p, []byte(nil))
	}
	f.Add(payloads[1], payloads[3])
	f.Add([]byte{kindAck, 2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, payloads[1])
	f.Fuzz(func(t *testing.T, a, b []byte) {
		dir := t.TempDir()
		var file []byte
		for _, p := range [][]byte{encodeHeader(header{caseID: "c", sourceID: "s", nextLocal: 1}), a, b} {
			file = appendFrame(file, p)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(1)), file, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, rec, err := openSpool(dir, "c", "s", slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return
		}
		defer sp.close()
		for _, b := range rec.batches {
			if b.local < 1 || b.local >= rec.nextLocal || len(b.segs) == 0 {
				t.Fatalf("recovered batch %d with next %d, %d segments", b.local, rec.nextLocal, len(b.segs))
			}
		}
	})
}

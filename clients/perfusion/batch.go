package perfusion

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

// Limits of one batch, as the server enforces them.
const (
	// MaxBatchSamples is the server's limit on samples in one batch.
	MaxBatchSamples = 10000
	// MaxBatchSeries is the server's limit on channels in one batch.
	MaxBatchSeries = 256
	// MaxSourceIDLen is the server's limit on a source id, in bytes.
	MaxSourceIDLen = 64
)

// builder accumulates one batch: a series per channel, in the order the
// channels first appeared, each extended by later appends. Recovery
// rebuilds a batch by replaying the same appends in the same order, so the
// rebuilt batch is identical to the one that was (or would have been)
// sent — which is what makes a resend a harmless duplicate on the server.
type builder struct {
	local   int64
	series  []*pb.SampleSeries
	index   map[string]int
	samples int
	segs    []*segment // the segments holding its records, in order
}

func newBuilder(local int64) *builder {
	return &builder{local: local, index: map[string]int{}}
}

// add appends chunks; each chunk's invalid indexes are relative to the
// chunk.
func (b *builder) add(chunks []*pb.SampleSeries) {
	for _, c := range chunks {
		i, ok := b.index[c.GetChannel()]
		if !ok {
			i = len(b.series)
			b.index[c.GetChannel()] = i
			b.series = append(b.series, &pb.SampleSeries{Channel: c.GetChannel()})
		}
		s := b.series[i]
		base := int32(len(s.OccurredAtUnixMs))
		s.OccurredAtUnixMs = append(s.OccurredAtUnixMs, c.GetOccurredAtUnixMs()...)
		s.Values = append(s.Values, c.GetValues()...)
		for _, x := range c.GetInvalidIndexes() {
			s.InvalidIndexes = append(s.InvalidIndexes, base+x)
		}
		b.samples += len(c.GetOccurredAtUnixMs())
	}
}

// addSeg notes that a record of the batch is in seg, which then holds one
// more pending batch until the batch is resolved.
func (b *builder) addSeg(seg *segment) {
	if n := len(b.segs); n == 0 || b.segs[n-1] != seg {
		b.segs = append(b.segs, seg)
		seg.live++
	}
}

// lastTime returns the last time of channel ch in the batch.
func (b *builder) lastTime(ch string) (int64, bool) {
	i, ok := b.index[ch]
	if !ok {
		return 0, false
	}
	ts := b.series[i].OccurredAtUnixMs
	return ts[len(ts)-1], true
}

// group is the samples one Send puts into one batch.
type group struct {
	local  int64
	chunks []*pb.SampleSeries
	cut    bool // the batch is full after this group
}

// planner decides, without changing anything, where the samples of one
// Send go: into the open batch while it has room and each channel's times
// keep increasing, else into new batches.
type planner struct {
	maxSamples int
	open       *builder // the open batch at the start, or nil
	next       int64    // the next unused local sequence

	cur      int64 // local sequence of the batch being planned; 0 for none
	fromOpen bool  // cur is the open batch
	last     map[string]int64
	nchan    int
	nsamples int
	groups   []group
}

func (p *planner) start() {
	p.cur, p.fromOpen, p.last = 0, false, map[string]int64{}
	p.nchan, p.nsamples = 0, 0
	if p.open != nil {
		p.cur, p.fromOpen = p.open.local, true
		p.nchan, p.nsamples = len(p.open.series), p.open.samples
	}
}

func (p *planner) lastTime(ch string) (int64, bool) {
	if t, ok := p.last[ch]; ok {
		return t, true
	}
	if p.fromOpen {
		return p.open.lastTime(ch)
	}
	return 0, false
}

// cutCur ends the batch being planned.
func (p *planner) cutCur() {
	if p.cur == 0 {
		return
	}
	if n := len(p.groups); n > 0 && p.groups[n-1].local == p.cur {
		p.groups[n-1].cut = true
	} else {
		p.groups = append(p.groups, group{local: p.cur, cut: true})
	}
	p.cur, p.fromOpen, p.last, p.nchan, p.nsamples = 0, false, map[string]int64{}, 0, 0
}

func (p *planner) emit(c *pb.SampleSeries) {
	if n := len(p.groups); n > 0 && p.groups[n-1].local == p.cur && !p.groups[n-1].cut {
		p.groups[n-1].chunks = append(p.groups[n-1].chunks, c)
		return
	}
	p.groups = append(p.groups, group{local: p.cur, chunks: []*pb.SampleSeries{c}})
}

// place plans series (already validated).
func (p *planner) place(series []*pb.SampleSeries) {
	p.start()
	for _, s := range series {
		ch, ts := s.GetChannel(), s.GetOccurredAtUnixMs()
		for i := 0; i < len(ts); {
			if p.cur == 0 {
				p.cur = p.next
				p.next++
			}
			last, seen := p.lastTime(ch)
			switch {
			case seen && ts[i] <= last, // the server wants strictly increasing times per channel and batch
				!seen && p.nchan >= MaxBatchSeries,
				p.nsamples >= p.maxSamples:
				p.cutCur()
				continue
			}
			take := min(p.maxSamples-p.nsamples, len(ts)-i)
			p.emit(chunk(s, i, i+take))
			if !seen {
				p.nchan++
			}
			p.nsamples += take
			p.last[ch] = ts[i+take-1]
			i += take
			if p.nsamples >= p.maxSamples {
				p.cutCur()
			}
		}
	}
}

// chunk copies samples [lo, hi) of s, with invalid indexes relative to lo.
func chunk(s *pb.SampleSeries, lo, hi int) *pb.SampleSeries {
	c := &pb.SampleSeries{
		Channel:          s.GetChannel(),
		OccurredAtUnixMs: append([]int64(nil), s.GetOccurredAtUnixMs()[lo:hi]...),
		Values:           append([]float64(nil), s.GetValues()[lo:hi]...),
	}
	for _, x := range s.GetInvalidIndexes() {
		if int(x) >= lo && int(x) < hi {
			c.InvalidIndexes = append(c.InvalidIndexes, x-int32(lo))
		}
	}
	return c
}

// validateSeries checks what the library needs to batch samples correctly:
// the shape of each series. Whether channels exist and values are
// plausible is the server's to say.
func validateSeries(series []*pb.SampleSeries) error {
	br := &errdetails.BadRequest{}
	add := func(f, d string) {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f, Description: d})
	}
	for i, s := range series {
		f := "series[" + strconv.Itoa(i) + "]"
		ts := s.GetOccurredAtUnixMs()
		switch {
		case s == nil:
			add(f, "must not be nil")
			continue
		case s.GetChannel() == "":
			add(f+".channel", "required")
		case len(ts) == 0:
			add(f+".occurred_at_unix_ms", "must hold at least one sample")
		case len(s.GetValues()) != len(ts):
			add(f+".values", "must have one value per time")
		}
		for j := 1; j < len(ts); j++ {
			if ts[j] <= ts[j-1] {
				add(f+".occurred_at_unix_ms["+strconv.Itoa(j)+"]", "times must be strictly increasing")
				break
			}
		}
		inv := s.GetInvalidIndexes()
		for j, x := range inv {
			if x < 0 || int(x) >= len(ts) || (j > 0 && x <= inv[j-1]) {
				add(f+".invalid_indexes["+strconv.Itoa(j)+"]", "must be strictly increasing indexes of samples")
				break
			}
		}
	}
	if len(br.FieldViolations) == 0 {
		return nil
	}
	st, err := status.New(codes.InvalidArgument, "perfusion: invalid samples: "+br.FieldViolations[0].Field+": "+br.FieldViolations[0].Description).WithDetails(br)
	if err != nil {
		return status.Error(codes.InvalidArgument, "perfusion: invalid samples")
	}
	return st.Err()
}

// Command pumpsim simulates a heart-lung machine (or ECMO circuit), gas
// blender, in-line blood-gas monitor (CDI-500-like) and patient monitor
// running a cardiopulmonary bypass case, and charts it on perfusiond
// through the Go client library: the case, 1 Hz numerics and 6-second
// blood gases over one SampleStreamer per device, and the perfusionist's
// entries (events, drugs, cardioplegia, labs, notes, artifact marks).
//
//	go run ./clients/pumpsim --addr 127.0.0.1:7070 --speed 60 --cases 2 --close --sign
//
// Device timestamps are simulated time. The case is placed so that its
// last sample is due at the wall-clock moment the run ends: with --speed S
// and --duration D the simulated start is now + D/S − D, so no timestamp
// is ever in the server's future. --speed 0 runs as fast as possible with
// the case ending now.
//
// A run that is killed (or interrupted) resumes when pumpsim is started
// again with the same arguments and --spool-dir: see state.go, resume.go
// and usageText.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/clients/perfusion"
	"perfusion/clients/pumpsim/sim"
)

// Config is a pumpsim run.
type Config struct {
	Addr, Principal string
	// Credentials identify pumpsim (a token, TLS); Principal, when set,
	// is the development header instead.
	Credentials   perfusion.Credentials
	Seed          uint64
	Speed         float64 // simulated seconds per wall second; 0 = as fast as possible
	Cases         int
	ECMO          bool
	Duration      time.Duration
	SpoolDir      string
	Close, Sign   bool
	HeightCm      float64
	WeightKg      float64
	TargetTempC   float64
	Arrest        time.Duration
	BSAFormula    string        // mosteller (default), dubois or haycock
	Progress      time.Duration // progress line interval; 0 = none
	Out           io.Writer
	ClientOptions []perfusion.Option
}

// CaseResult is what one simulated case holds: the simulation's samples
// and entries, whether this run or an interrupted one charted them.
type CaseResult struct {
	CaseID           string
	Samples, Invalid int64
	Entries          int
	Closed, Signed   bool
	// Resumed says the case was begun by an interrupted run; OnRecord and
	// EntriesOnRecord count what it held when this run took it up.
	Resumed         bool
	OnRecord        int64
	EntriesOnRecord int
}

const usageText = `pumpsim simulates a heart-lung machine (or ECMO circuit), gas blender,
in-line blood-gas monitor and patient monitor through a CPB case and charts
it on perfusiond through the Go client library: the case, 1 Hz numerics,
6-second blood gases and the perfusionist's entries.

  pumpsim --addr 127.0.0.1:7070 --speed 60 --cases 2 --sign

Resuming: a pumpsim that is killed or interrupted mid-run and started again
with the same arguments (--close/--sign may be added) and the same
--spool-dir resumes its own cases instead of opening new ones. It keeps
pumpsim-<hash>.json in the spool directory (written before the cases are
created, removed once they have all finished); on restart it sends what
the spool still holds, asks the server where each device's data and the
entries stop, replays the seeded simulation up to there without sending it
again, charts the rest (device times as first simulated; with --speed the
pacing picks up from there) and closes/signs as asked. Other arguments, or
no state file, start new cases.

Flags:
`

func main() {
	var cfg Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:7070", "perfusiond address host:port, or several separated by commas (the client moves to another when one dies)")
	flag.StringVar(&cfg.Principal, "principal", "", "development only: principal to act as (x-perfusion-principal), for a test build of perfusiond (-tags devauth) run with --dev-header-auth")
	flag.StringVar(&cfg.Credentials.TokenFile, "token-file", "", "file holding the bearer token; default: env "+perfusion.EnvToken)
	flag.StringVar(&cfg.Credentials.CAFile, "ca-file", "", "CA certificate(s) verifying the server; implies TLS")
	flag.StringVar(&cfg.Credentials.CertFile, "cert", "", "client certificate for mutual TLS")
	flag.StringVar(&cfg.Credentials.KeyFile, "key", "", "client certificate's key")
	flag.StringVar(&cfg.Credentials.ServerName, "server-name", "", "server name to verify, when it differs from --addr's host")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "random seed; case i uses seed+i")
	flag.Float64Var(&cfg.Speed, "speed", 1, "simulated seconds per wall second (60 = a 4 h case in 4 min; 0 = as fast as possible)")
	flag.IntVar(&cfg.Cases, "cases", 1, "number of concurrent cases")
	flag.BoolVar(&cfg.ECMO, "ecmo", false, "ECMO run: no cross-clamp or cardioplegia, steady flow")
	flag.DurationVar(&cfg.Duration, "duration", 4*time.Hour, "simulated case length")
	flag.StringVar(&cfg.SpoolDir, "spool-dir", filepath.Join(os.TempDir(), "pumpsim-spool"), "streamer spool directory; also holds the run state that lets a killed run resume")
	flag.BoolVar(&cfg.Close, "close", false, "close the case at the end")
	flag.BoolVar(&cfg.Sign, "sign", false, "close and sign the case at the end")
	flag.Float64Var(&cfg.HeightCm, "height", 175, "patient height, cm")
	flag.Float64Var(&cfg.WeightKg, "weight", 80, "patient weight, kg (neonates from ~1.5 kg)")
	flag.Float64Var(&cfg.TargetTempC, "target-temp", 0, "cooling target, °C (0: 32, or 18 with --arrest)")
	flag.DurationVar(&cfg.Arrest, "arrest", 0, "deep hypothermic circulatory arrest of this length during the cross-clamp, e.g. 30m (CPB only)")
	flag.StringVar(&cfg.BSAFormula, "bsa-formula", "mosteller", "BSA formula flows are indexed to: mosteller, dubois or haycock (often used for children)")
	flag.DurationVar(&cfg.Progress, "progress", 2*time.Second, "progress line interval (0 = none)")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usageText)
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg.Out = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pumpsim:", err)
		os.Exit(1)
	}
}

type progress struct {
	samples, entries atomic.Int64
	simNanos         []atomic.Int64
	phase            []atomic.Int32
}

// bsaFormulas maps --bsa-formula to the model's formula and the case's.
var bsaFormulas = map[string]struct {
	sim charting.BSAFormula
	pb  pb.BsaFormula
}{
	"":          {charting.BSAMosteller, pb.BsaFormula_BSA_FORMULA_MOSTELLER},
	"mosteller": {charting.BSAMosteller, pb.BsaFormula_BSA_FORMULA_MOSTELLER},
	"dubois":    {charting.BSADuBois, pb.BsaFormula_BSA_FORMULA_DUBOIS},
	"haycock":   {charting.BSAHaycock, pb.BsaFormula_BSA_FORMULA_HAYCOCK},
}

// run simulates cfg.Cases cases concurrently and returns what each sent.
func run(ctx context.Context, cfg Config) ([]CaseResult, error) {
	cfg.Cases = max(cfg.Cases, 1)
	switch {
	case cfg.Speed < 0:
		return nil, errors.New("--speed must be ≥ 0")
	case cfg.Speed > 0 && cfg.Speed < 1:
		return nil, errors.New("--speed below 1 would put device time in the future; use 1 or more (0 = unpaced)")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 4 * time.Hour
	}
	if _, ok := bsaFormulas[cfg.BSAFormula]; !ok {
		return nil, fmt.Errorf("--bsa-formula must be mosteller, dubois or haycock, not %q", cfg.BSAFormula)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Sign {
		cfg.Close = true
	}
	creds := cfg.Credentials
	creds.Principal = cfg.Principal
	copts, err := creds.Options(nil)
	if err != nil {
		return nil, err
	}
	opts := append(copts, cfg.ClientOptions...)
	client, err := perfusion.Dial(ctx, cfg.Addr, opts...)
	if err != nil {
		return nil, err
	}
	defer client.Close()

	// The run's state is saved before any case is created, so a run killed
	// at any point is resumed by the next pumpsim with these arguments.
	sf, st, resumed, err := openState(cfg, time.Now())
	if err != nil {
		return nil, err
	}
	defer sf.close()
	t0, simStart := st.T0, st.SimStart
	if resumed {
		fmt.Fprintf(cfg.Out, "resuming %d case(s) of the run started %s with these arguments\n", len(st.CaseIDs), t0.Format(time.RFC3339))
	}

	pr := &progress{simNanos: make([]atomic.Int64, cfg.Cases), phase: make([]atomic.Int32, cfg.Cases)}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress > 0 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			tk := time.NewTicker(cfg.Progress)
			defer tk.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-tk.C:
					printProgress(cfg, pr)
				}
			}
		}()
	}

	results := make([]CaseResult, cfg.Cases)
	errs := make([]error, cfg.Cases)
	var wg sync.WaitGroup
	for i := range cfg.Cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = runCase(ctx, cfg, client, i, st.CaseIDs[i], resumed, t0, simStart, pr)
		}()
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	if cfg.Progress > 0 {
		printProgress(cfg, pr)
	}
	for _, r := range results {
		if r.CaseID != "" {
			again := ""
			if r.Resumed {
				again = fmt.Sprintf(", resumed with %d samples and %d entries on the record", r.OnRecord, r.EntriesOnRecord)
			}
			fmt.Fprintf(cfg.Out, "case %s: %d samples (%d invalid), %d entries, closed=%v signed=%v%s\n",
				r.CaseID, r.Samples, r.Invalid, r.Entries, r.Closed, r.Signed, again)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// Interrupted: whether the deadline or Ctrl-C caught a call in
			// flight (a gRPC status) or a wait between calls (the context's
			// error) is chance; the run was interrupted either way.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		// The state stays, so that the next run resumes these cases.
		return results, fmt.Errorf("%w (the same command resumes the cases; their state is in %s)", err, sf.path)
	}
	return results, sf.remove()
}

func printProgress(cfg Config, pr *progress) {
	var b strings.Builder
	for i := range pr.simNanos {
		fmt.Fprintf(&b, " [%d %s %s]", i, fmtDur(time.Duration(pr.simNanos[i].Load())), sim.Phase(pr.phase[i].Load()))
	}
	fmt.Fprintf(cfg.Out, "progress: sim/%s%s samples=%d entries=%d\n", fmtDur(cfg.Duration), b.String(), pr.samples.Load(), pr.entries.Load())
}

func fmtDur(d time.Duration) string {
	d = d.Truncate(time.Second)
	return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// seriesBuf accumulates one source's samples between sends.
type seriesBuf struct {
	order []string
	by    map[string]*pb.SampleSeries
	n     int
}

func (b *seriesBuf) add(ms int64, r sim.Reading) {
	s := b.by[r.Channel]
	if s == nil {
		s = &pb.SampleSeries{Channel: r.Channel}
		b.by[r.Channel] = s
		b.order = append(b.order, r.Channel)
	}
	if r.Invalid {
		s.InvalidIndexes = append(s.InvalidIndexes, int32(len(s.Values)))
	}
	s.OccurredAtUnixMs = append(s.OccurredAtUnixMs, ms)
	s.Values = append(s.Values, r.Value)
	b.n++
}

func (b *seriesBuf) take() []*pb.SampleSeries {
	out := make([]*pb.SampleSeries, 0, len(b.order))
	for _, ch := range b.order {
		out = append(out, b.by[ch])
	}
	b.order, b.by, b.n = nil, map[string]*pb.SampleSeries{}, 0
	return out
}

var sources = []sim.Source{sim.HLM, sim.Blender, sim.Monitor, sim.Inline}

// runCase simulates case i, or takes it up where an interrupted run left
// it when resumed.
func runCase(ctx context.Context, cfg Config, c *perfusion.Client, i int, caseID string, resumed bool, t0, simStart time.Time, pr *progress) (CaseResult, error) {
	s := sim.New(simConfig(cfg, i))
	sc := s.Config()
	res := CaseResult{CaseID: caseID, Resumed: resumed}
	caseUUID, err := uuid.Parse(caseID)
	if err != nil {
		return res, fmt.Errorf("case %d: bad case id: %w", i, err)
	}
	kind := pb.CaseKind_CASE_KIND_CPB
	desc := "Simulated CPB case (pumpsim)"
	if cfg.ECMO {
		kind, desc = pb.CaseKind_CASE_KIND_ECMO, "Simulated VA-ECMO run (pumpsim)"
	}
	pump := pb.PumpType_PUMP_TYPE_CENTRIFUGAL
	if sc.WeightKg < 10 {
		pump = pb.PumpType_PUMP_TYPE_ROLLER
	}
	cs := pb.CaseStatus_CASE_STATUS_UNSPECIFIED
	if resumed {
		if cs, err = resumeStatus(ctx, cfg, c, caseID); err != nil {
			return res, fmt.Errorf("case %d: %w", i, err)
		}
	}
	if cs == pb.CaseStatus_CASE_STATUS_UNSPECIFIED {
		// The same request on a resume: CreateCase is idempotent on the id.
		_, err := c.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: caseID, Kind: kind, Site: "SIM",
			Room: fmt.Sprintf("OR-%d", i+1), ScheduledStart: timestamppb.New(simStart),
			Details: &pb.CaseDetails{
				Patient: &pb.Patient{Mrn: fmt.Sprintf("SIM%06d", cfg.Seed+uint64(i)), MrnAssigningAuthority: "PUMPSIM",
					FamilyName: "Simulated", GivenName: fmt.Sprintf("Patient %d", i+1), HeightCm: sc.HeightCm, WeightKg: sc.WeightKg,
					BsaFormula: bsaFormulas[cfg.BSAFormula].pb},
				Procedure: &pb.Procedure{Description: desc},
				Circuit:   &pb.Circuit{ArterialPump: pump, CardioplegiaSystem: "blood 4:1"},
				Prime:     &pb.Prime{Components: []*pb.PrimeComponent{{Name: "balanced crystalloid", VolumeMl: sc.PrimeML}}},
			}})
		if err != nil {
			return res, fmt.Errorf("case %d: CreateCase: %w", i, err)
		}
		cs = pb.CaseStatus_CASE_STATUS_PLANNED
	}
	fmt.Fprintf(cfg.Out, "case %d: %s (BSA %.2f m², %s)\n", i, res.CaseID, s.BSA(), desc)
	// A case the interrupted run closed has all its data: only the
	// signature may be left to do.
	chart := cs == pb.CaseStatus_CASE_STATUS_PLANNED || cs == pb.CaseStatus_CASE_STATUS_IN_PROGRESS

	streamers := map[sim.Source]*perfusion.SampleStreamer{}
	bufs := map[sim.Source]*seriesBuf{}
	defer func() { // on an early return, stop what is open; the spool keeps the rest
		for _, st := range streamers {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st.Close(cctx)
			cancel()
		}
	}()
	for _, src := range sources {
		if !chart {
			break
		}
		// On a resume, the streamer finds in the spool what the killed run
		// handed it and did not see acknowledged, and sends it first.
		st, err := perfusion.OpenSampleStreamer(ctx, c, res.CaseID, string(src),
			filepath.Join(cfg.SpoolDir, res.CaseID, string(src)), perfusion.StreamerOptions{})
		if err != nil {
			return res, fmt.Errorf("case %d: open streamer %s: %w", i, src, err)
		}
		streamers[src] = st
		bufs[src] = &seriesBuf{by: map[string]*pb.SampleSeries{}}
	}
	var rec *onRecord // what the case holds from the interrupted run
	if resumed && chart {
		for _, src := range sources {
			if err := streamers[src].Flush(ctx); err != nil {
				return res, fmt.Errorf("case %d: send the spooled samples of %s: %w", i, src, err)
			}
		}
		if rec, err = readRecord(ctx, c, res.CaseID, simStart); err != nil {
			return res, fmt.Errorf("case %d: resume: %w", i, err)
		}
		if cfg.Speed > 0 {
			// Pace on from where the data stops: its first missing second
			// is due now (never earlier than first planned, so no device
			// time gets ahead of the wall clock). Device times stay as
			// first simulated.
			t0 = later(t0, time.Now().Add(-time.Duration(float64(rec.from+time.Second)/cfg.Speed)))
		}
		fmt.Fprintf(cfg.Out, "case %d: resuming at %s of simulated time (%d of %d sources had data, %d entries on the record)\n",
			i, fmtDur(rec.from), rec.sources, len(sources), len(rec.entries))
	}
	flush := func() error {
		for _, src := range sources {
			b := bufs[src]
			if b.n == 0 {
				continue
			}
			n := int64(b.n)
			if err := streamers[src].Send(ctx, b.take()...); err != nil {
				return fmt.Errorf("case %d: send %s: %w", i, src, err)
			}
			pr.samples.Add(n)
		}
		return nil
	}
	add := func(src sim.Source, ms int64, r sim.Reading) {
		res.Samples++
		if r.Invalid {
			res.Invalid++
		}
		switch {
		case !chart:
		case rec.stored(r.Channel, ms):
			res.OnRecord++
		default:
			bufs[src].add(ms, r)
		}
	}
	buffered, events := 0, 0
	for !s.Done() {
		tk := s.Step()
		at := simStart.Add(tk.At)
		ms := at.UnixMilli()
		for _, r := range tk.Numerics {
			add(sim.SourceOf[r.Channel], ms, r)
		}
		for _, r := range tk.Gases {
			add(sim.Inline, ms, r)
		}
		buffered++
		if chart && (len(tk.Events) > 0 || buffered >= 10) {
			// samples before the entries that mark them
			if err := flush(); err != nil {
				return res, err
			}
			buffered = 0
		}
		for _, ev := range tk.Events {
			for j, e := range entries(res.CaseID, simStart, ev) {
				e.EntryId = entryID(caseUUID, events, j)
				res.Entries++
				if !chart {
					continue
				}
				if rec.hasEntry(e.EntryId) {
					res.EntriesOnRecord++
					continue
				}
				if _, err := c.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: e}); err != nil {
					return res, fmt.Errorf("case %d: RecordEntry at %s: %w", i, fmtDur(tk.At), err)
				}
				pr.entries.Add(1)
			}
			events++
		}
		pr.simNanos[i].Store(int64(tk.At + time.Second))
		pr.phase[i].Store(int32(tk.Phase))
		if chart && cfg.Speed > 0 {
			// sample time simStart+At = t0 + D/S − D + At ≤ t0 + (At+1 s)/S = due
			due := t0.Add(time.Duration(float64(tk.At+time.Second) / cfg.Speed))
			if d := time.Until(due); d > 0 {
				if err := flush(); err != nil {
					return res, err
				}
				buffered = 0
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	if !chart {
		res.OnRecord, res.EntriesOnRecord = res.Samples, res.Entries
	} else if err := flush(); err != nil {
		return res, err
	}
	for _, src := range sources {
		st := streamers[src]
		if st == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := st.Close(cctx)
		cancel()
		delete(streamers, src)
		if err != nil {
			return res, fmt.Errorf("case %d: close streamer %s (unsent batches stay in the spool): %w", i, src, err)
		}
		if d := st.Stats().DeadLettered; d > 0 {
			return res, fmt.Errorf("case %d: %s: %d batches rejected by the server (see the spool's dead letters)", i, src, d)
		}
	}
	if cfg.Close && chart {
		if _, err := c.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: res.CaseID}); err != nil {
			return res, fmt.Errorf("case %d: CloseCase: %w", i, err)
		}
		cs = pb.CaseStatus_CASE_STATUS_CLOSED
	}
	res.Closed = cs == pb.CaseStatus_CASE_STATUS_CLOSED || cs == pb.CaseStatus_CASE_STATUS_SIGNED
	if cfg.Sign && cs == pb.CaseStatus_CASE_STATUS_CLOSED {
		if _, err := c.SignCase(ctx, &pb.SignCaseRequest{CaseId: res.CaseID, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED,
			SignerDisplayName: "Simulated Perfusionist (pumpsim)"}); err != nil {
			return res, fmt.Errorf("case %d: SignCase: %w", i, err)
		}
		cs = pb.CaseStatus_CASE_STATUS_SIGNED
	}
	res.Signed = cs == pb.CaseStatus_CASE_STATUS_SIGNED
	return res, nil
}

// simConfig is the simulation of case i: seeded, so every run of it (a
// resume's replay included) yields the same ticks.
func simConfig(cfg Config, i int) sim.Config {
	return sim.Config{Seed: cfg.Seed + uint64(i), HeightCm: cfg.HeightCm, WeightKg: cfg.WeightKg,
		ECMO: cfg.ECMO, Duration: cfg.Duration, TargetTempC: cfg.TargetTempC, Arrest: cfg.Arrest,
		BSAFormula: bsaFormulas[cfg.BSAFormula].sim}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// resumeStatus is the status of a case of an interrupted run, or
// UNSPECIFIED when the run was killed before the server created it.
func resumeStatus(ctx context.Context, cfg Config, c *perfusion.Client, caseID string) (pb.CaseStatus, error) {
	gc, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: caseID})
	if err == nil {
		return gc.GetCase().GetStatus(), nil
	}
	if status.Code(err) != codes.NotFound {
		return 0, fmt.Errorf("resume: GetCase: %w", err)
	}
	// Streamers are opened (making the case's spool) only after the case
	// exists: with a spool, the server lost the case or is another one,
	// and charting the rest of it there would make a record with a hole.
	if _, serr := os.Stat(filepath.Join(cfg.SpoolDir, caseID)); serr == nil {
		return 0, fmt.Errorf("resume: case %s was created by the interrupted run, but the server at %s does not know it (another server?); remove %s to start new cases",
			caseID, cfg.Addr, filepath.Join(cfg.SpoolDir, "pumpsim-"+argsOf(cfg).fingerprint()+".json"))
	}
	return pb.CaseStatus_CASE_STATUS_UNSPECIFIED, nil
}

// entries turns one simulated operator action into record entries (a
// panel of labs is one entry per analyte; an artifact one per channel),
// without their ids.
func entries(caseID string, simStart time.Time, ev sim.Event) []*pb.Entry {
	at := timestamppb.New(simStart.Add(ev.At))
	mk := func(set func(e *pb.Entry)) *pb.Entry {
		e := &pb.Entry{CaseId: caseID, OccurredAt: at} // the caller sets EntryId
		set(e)
		return e
	}
	route := func(r string) pb.Route {
		if r == "circuit" {
			return pb.Route_ROUTE_CIRCUIT
		}
		return pb.Route_ROUTE_INTRAVENOUS
	}
	var out []*pb.Entry
	switch ev.Kind {
	case sim.KindEvent:
		t := pb.EventType(pb.EventType_value["EVENT_TYPE_"+strings.ToUpper(ev.Type)])
		out = append(out, mk(func(e *pb.Entry) { e.Detail = &pb.Entry_Event{Event: &pb.Event{Type: t, Comment: ev.Comment}} }))
	case sim.KindDrug:
		d := ev.Drug
		out = append(out, mk(func(e *pb.Entry) {
			e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: d.Name, Dose: d.Dose, Unit: d.Unit, Route: route(d.Route)}}
		}))
	case sim.KindCardioplegia:
		c := ev.CPG
		ph := pb.CardioplegiaPhase_CARDIOPLEGIA_PHASE_MAINTENANCE
		if c.Phase == "induction" {
			ph = pb.CardioplegiaPhase_CARDIOPLEGIA_PHASE_INDUCTION
		}
		out = append(out, mk(func(e *pb.Entry) {
			e.Detail = &pb.Entry_Cardioplegia{Cardioplegia: &pb.CardioplegiaDose{Solution: c.Solution,
				Route: pb.CardioplegiaRoute_CARDIOPLEGIA_ROUTE_ANTEGRADE, VolumeMl: c.VolumeML, TemperatureC: c.TempC, Phase: ph}}
		}))
	case sim.KindLab:
		for _, l := range ev.Labs {
			lr := &pb.LabResult{Analyte: l.Analyte, Value: l.Value, Unit: l.Unit, Site: pb.SampleSite_SAMPLE_SITE_ARTERIAL, Device: "POC analyser (simulated)"}
			if l.Analyte != "act" {
				lr.TemperatureCorrection = pb.TemperatureCorrection_TEMPERATURE_CORRECTION_ALPHA_STAT
			}
			out = append(out, mk(func(e *pb.Entry) { e.Detail = &pb.Entry_LabResult{LabResult: lr} }))
		}
	case sim.KindNote:
		out = append(out, mk(func(e *pb.Entry) { e.Detail = &pb.Entry_Note{Note: &pb.Note{Text: ev.Note}} }))
	case sim.KindBloodProduct:
		b := ev.Blood
		out = append(out, mk(func(e *pb.Entry) {
			e.Detail = &pb.Entry_BloodProduct{BloodProduct: &pb.BloodProduct{Type: pb.BloodProductType_BLOOD_PRODUCT_TYPE_PRBC,
				Units: b.Units, VolumeMl: b.VolumeML, Route: pb.Route_ROUTE_CIRCUIT}}
		}))
	case sim.KindFluid:
		f := ev.Fluid
		k := pb.FluidKind(pb.FluidKind_value["FLUID_KIND_"+strings.ToUpper(f.Kind)])
		out = append(out, mk(func(e *pb.Entry) {
			e.Detail = &pb.Entry_Fluid{Fluid: &pb.Fluid{Kind: k, Name: f.Name, VolumeMl: f.VolumeML}}
		}))
	case sim.KindChecklist:
		c := ev.Check
		st := pb.ChecklistItemState(pb.ChecklistItemState_value["CHECKLIST_ITEM_STATE_"+strings.ToUpper(c.State)])
		out = append(out, mk(func(e *pb.Entry) {
			e.Detail = &pb.Entry_ChecklistItem{ChecklistItem: &pb.ChecklistItem{Section: c.Section, Item: c.Item, State: st}}
		}))
	case sim.KindArtifact:
		a := ev.Artifact
		for _, ch := range a.Channels {
			out = append(out, mk(func(e *pb.Entry) {
				e.Detail = &pb.Entry_ArtifactMark{ArtifactMark: &pb.ArtifactMark{Channel: ch, SourceId: string(a.Source),
					Start: timestamppb.New(simStart.Add(a.Start)), End: timestamppb.New(simStart.Add(a.End)), Reason: a.Reason}}
			}))
		}
	}
	return out
}

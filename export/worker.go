package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"perfusion/charting"
	"perfusion/store"
)

// Outcome is what became of one attempt.
type Outcome struct {
	// Result says what happens next.
	Result Result
	// AckCode and AckText are the receiver's answer, when there was one:
	// MSA-1 and the ACK's text, or the HTTP status and a response summary.
	// They may hold receiver free text: stored, never logged.
	AckCode, AckText string
	// Err describes a failure. Its text is stored and logged, so it must
	// not carry message content.
	Err error
}

// Result classifies an outcome.
type Result int

// Results.
const (
	// Delivered: the receiver accepted the message (final).
	Delivered Result = iota + 1
	// Retry: the receiver was unavailable, busy or silent; try again after
	// a back-off.
	Retry
	// Permanent: the receiver refused the content; resending the same bytes
	// cannot help. It waits for a person (RetryDelivery, or
	// SupersedeDelivery when a later version replaces it), and so do the
	// later versions of its case to its destination.
	Permanent
	// Held: the record cannot be rendered until its patient identity is
	// complete (ErrIdentityIncomplete). Not retried; an identity
	// reconciliation of the case (store.ReconcileIdentity) releases it.
	Held
)

func (r Result) String() string {
	switch r {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Permanent:
		return "failed"
	case Held:
		return "held"
	}
	return "unknown"
}

// Transport sends one rendered message to one destination.
type Transport interface {
	Send(ctx context.Context, r *Rendered) Outcome
}

// WorkerConfig configures a Worker. Zero durations and counts take the
// defaults given.
type WorkerConfig struct {
	// Outbox is where deliveries are queued.
	Outbox store.OutboxBackend
	// Renderer renders each delivery when it is sent.
	Renderer *Renderer
	// Transports maps each configured destination to its sender. Run
	// serves each of them with its own loop and claims only deliveries to
	// it, so a slow or hanging receiver delays nothing queued for another.
	// A delivery to a destination without a transport (queued before the
	// server was restarted without that destination's settings) stays
	// pending for a server that has one; RunOnce, which claims for any
	// destination, postpones it and says so in its last error.
	Transports map[store.Destination]Transport
	// Lease is how long a claim lasts (default 2 min). It must exceed the
	// longest single send (MLLP connect + write + ACK timeouts, HTTP
	// timeout): a delivery still claimed after it is taken again by another
	// worker, which is a duplicate send the receiver must drop by message
	// id.
	Lease time.Duration
	// PollInterval is how long an idle worker waits before looking for due
	// deliveries again (default 2 s).
	PollInterval time.Duration
	// InitialBackoff and MaxBackoff bound the wait before attempt n+1:
	// InitialBackoff·2^(n-1), capped at MaxBackoff, jittered to between
	// half and all of it (defaults 5 s and 10 min).
	InitialBackoff, MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger gets one line per attempt (case id, version, destination,
	// attempt, outcome); nil means slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every attempt (the operators'
	// metrics).
	Observer Observer
}

// Observer is told of delivery attempts. Its methods must not block.
type Observer interface {
	// DeliveryAttempted reports one attempt to destination: its outcome
	// (delivered, retry, permanent, held) and how long it took.
	DeliveryAttempted(destination, outcome string, took time.Duration)
}

// Worker delivers queued exports: one loop per destination, each sending
// one message at a time, the versions of a case in order (the outbox's
// claims see to that). Several workers (in several servers) may run
// against one database; the outbox's claims keep them apart.
type Worker struct {
	cfg WorkerConfig
}

// NewWorker returns a Worker for cfg.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Outbox == nil || cfg.Renderer == nil {
		return nil, errors.New("export: worker needs an outbox and a renderer")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Lease, 2*time.Minute)
	def(&cfg.PollInterval, 2*time.Second)
	def(&cfg.InitialBackoff, 5*time.Second)
	def(&cfg.MaxBackoff, 10*time.Minute)
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.InitialBackoff)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg}, nil
}

// Run delivers until ctx is done, then returns nil. Each destination with
// a transport gets its own loop, so one receiver that hangs until the
// lease's worth of timeouts delays only its own messages. A delivery in
// flight when ctx ends is interrupted and goes back to pending (or, if
// recording that fails too, is reclaimed when its lease expires).
func (w *Worker) Run(ctx context.Context) error {
	dests := make([]store.Destination, 0, len(w.cfg.Transports))
	for d := range w.cfg.Transports {
		dests = append(dests, d)
	}
	slices.Sort(dests)
	if len(dests) == 0 {
		dests = append(dests, "") // nothing to send with: postpone whatever is due, saying why
	}
	var wg sync.WaitGroup
	for _, d := range dests {
		wg.Go(func() { w.loop(ctx, d) })
	}
	wg.Wait()
	return nil
}

// loop delivers to dest (any destination when empty) until ctx is done.
func (w *Worker) loop(ctx context.Context, dest store.Destination) {
	for {
		n, err := w.runOnce(ctx, dest)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "export: outbox unavailable", slog.String("destination", string(dest)),
				slog.String("error", err.Error()))
		}
		if n > 0 && err == nil {
			continue // more may be due
		}
		t := time.NewTimer(w.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// RunOnce claims one due delivery to any destination and attempts it. It
// returns how many it attempted (0 or 1).
func (w *Worker) RunOnce(ctx context.Context) (int, error) { return w.runOnce(ctx, "") }

// runOnce claims one due delivery to dest (any when empty) and attempts it.
func (w *Worker) runOnce(ctx context.Context, dest store.Destination) (int, error) {
	ds, err := w.cfg.Outbox.ClaimDeliveries(ctx, dest, w.cfg.Now(), w.cfg.Lease, 1)
	if err != nil {
		return 0, fmt.Errorf("export: claim: %w", err)
	}
	for i := range ds {
		if err := w.attempt(ctx, &ds[i]); err != nil {
			return i + 1, err
		}
	}
	return len(ds), nil
}

// attempt renders and sends one claimed delivery and records the outcome.
func (w *Worker) attempt(ctx context.Context, d *store.Delivery) error {
	start := time.Now()
	out := w.send(ctx, d)
	if w.cfg.Observer != nil {
		w.cfg.Observer.DeliveryAttempted(string(d.Destination), out.Result.String(), time.Since(start))
	}
	if ctx.Err() != nil && out.Result != Delivered {
		// Shutting down: whatever happened, the message may or may not have
		// arrived; send it again after the restart (the receiver
		// deduplicates).
		out = Outcome{Result: Retry, Err: errors.New("interrupted by shutdown")}
	}
	now := w.cfg.Now()
	claimed := d.Attempts
	d.UpdatedAt, d.AckCode, d.AckText, d.LastError = now, out.AckCode, out.AckText, ""
	if out.Err != nil {
		d.LastError = out.Err.Error()
	}
	switch out.Result {
	case Delivered:
		d.State, d.DeliveredAt = store.DeliveryDelivered, now
	case Permanent:
		d.State = store.DeliveryFailed
	case Held:
		d.State = store.DeliveryHeld
	default:
		d.State, d.NextAttemptAt = store.DeliveryPending, now.Add(w.backoff(d.Attempts))
		if ctx.Err() != nil {
			d.NextAttemptAt = now
		}
	}
	log := w.cfg.Logger.With(slog.String("case_id", d.CaseID.String()), slog.Int64("version", d.Version),
		slog.String("destination", string(d.Destination)), slog.Int("attempt", d.Attempts),
		slog.String("outcome", out.Result.String()), slog.String("ack_code", out.AckCode))
	// Record the outcome even when ctx was cancelled (shutdown): a short,
	// separate deadline.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ok, err := w.cfg.Outbox.FinishDelivery(fctx, d, claimed)
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "export: outcome not recorded; the delivery is retried when its lease expires", slog.String("error", err.Error()))
		return fmt.Errorf("export: record outcome: %w", err)
	}
	if !ok {
		log.LogAttrs(ctx, slog.LevelWarn, "export: claim expired before the outcome was recorded; another worker has it")
		return nil
	}
	level := slog.LevelInfo
	if out.Result != Delivered {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{}
	if out.Err != nil {
		attrs = append(attrs, slog.String("error", out.Err.Error()))
	}
	if out.Result == Retry {
		attrs = append(attrs, slog.Time("next_attempt_at", d.NextAttemptAt))
	}
	log.LogAttrs(ctx, level, "export: delivery attempt", attrs...)
	return nil
}

// send renders the delivery and hands it to its transport.
func (w *Worker) send(ctx context.Context, d *store.Delivery) Outcome {
	t, ok := w.cfg.Transports[d.Destination]
	if !ok {
		return Outcome{Result: Retry, Err: fmt.Errorf("destination %s is not configured on this server", d.Destination)}
	}
	r, err := w.cfg.Renderer.Render(ctx, d.Destination, d.CaseID, d.Version)
	if err != nil {
		return renderOutcome(err)
	}
	if r.MessageID != d.MessageID {
		// The queued id is what the receiver deduplicates on; a renderer
		// that disagrees would defeat it.
		return Outcome{Result: Permanent, Err: errors.New("rendered message id differs from the queued one")}
	}
	return t.Send(ctx, r)
}

// renderOutcome classifies a render failure: a case or version that is
// not exportable, or content the builders refuse, is permanent; anything
// else (the database) is retried.
func renderOutcome(err error) Outcome {
	var pe *charting.PreconditionError
	if errors.Is(err, ErrIdentityIncomplete) {
		return Outcome{Result: Held, Err: err}
	}
	if errors.Is(err, ErrNotAVersion) || errors.Is(err, charting.ErrNotFound) || errors.As(err, &pe) || errors.Is(err, ErrContent) {
		return Outcome{Result: Permanent, Err: err}
	}
	return Outcome{Result: Retry, Err: err}
}

// backoff is the jittered wait after attempt n.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.InitialBackoff
	for i := 1; i < n && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	// cannot help. It waits for a person (RetryDelivery).
	Permanent
)

func (r Result) String() string {
	switch r {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Permanent:
		return "failed"
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
	// Transports maps each configured destination to its sender. A
	// delivery to a destination without one is postponed by MaxBackoff and
	// says so in its last error (a server started without that
	// destination's settings).
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
}

// Worker delivers queued exports. Several workers (in several servers) may
// run against one database; the outbox's claims keep them apart.
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

// Run delivers until ctx is done, then returns nil. A delivery in flight
// when ctx ends is interrupted and goes back to pending (or, if recording
// that fails too, is reclaimed when its lease expires).
func (w *Worker) Run(ctx context.Context) error {
	for {
		n, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "export: outbox unavailable", slog.String("error", err.Error()))
		}
		if n > 0 && err == nil {
			continue // more may be due
		}
		t := time.NewTimer(w.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// RunOnce claims one due delivery and attempts it. It returns how many it
// attempted (0 or 1).
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	ds, err := w.cfg.Outbox.ClaimDeliveries(ctx, w.cfg.Now(), w.cfg.Lease, 1)
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
	out := w.send(ctx, d)
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

// Package ingest is the group committer for device data: it gathers the
// sample batches of every open stream into shared transactions
// (store.Store.AppendSampleBatches), so the database pays one commit — one
// WAL flush — for many batches instead of one each, and tells each
// submitter its batch's outcome only after that transaction committed.
//
// Three limits keep it well behaved under any load:
//
//   - A commit starts at most MaxDelay after its first batch arrived, or
//     sooner when it holds MaxBatches batches or MaxSamples samples, so an
//     acknowledgement waits at most MaxDelay for company.
//   - At most Commits transactions run at once. While they run, new
//     batches queue for the next one, so commits grow with the load
//     instead of multiplying.
//   - The queue is bounded in batches and in samples (QueueBatches,
//     QueueSamples), counted from Submit until the batch's commit ends.
//     When it is full, Submit blocks: a slow database slows acknowledgements,
//     streams stop reading, and gRPC flow control pushes back on the
//     gateways. Memory stays bounded and nothing is dropped: a batch is
//     either committed or its submitter is told it was not.
//
// Faults: one batch the database refuses for its content fails alone
// (store.AppendSampleBatches isolates it and commits the rest of the
// group); an error about the database fails every batch of the commit.
//
// Order: batches are committed in the order they were submitted, except
// that two commits may run at once and so finish in either order. A
// submitter that needs results in order (a stream's acknowledgements) waits
// for its tickets in order; the store's watermarks and idempotency make
// the commit order itself irrelevant to the record.
package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"perfusion/charting"
	"perfusion/store"
)

// Defaults for zero Config fields. They favour latency at the rates of a
// hospital (about a thousand batches a second): a commit gathers a few
// milliseconds of batches, well under the 50 ms an acknowledgement may take,
// while two commits in flight keep the database busy during each other's
// WAL flush.
const (
	DefaultMaxDelay      = 2 * time.Millisecond
	DefaultMaxBatches    = 1000
	DefaultMaxSamples    = 200_000
	DefaultCommits       = 2
	DefaultQueueBatches  = 10_000
	DefaultQueueSamples  = 1_000_000
	DefaultCommitTimeout = 30 * time.Second
)

// Config sets the committer's limits. Zero fields take the defaults.
type Config struct {
	// MaxDelay is how long a commit waits for more batches after its
	// first one arrived.
	MaxDelay time.Duration
	// MaxBatches and MaxSamples cap one commit.
	MaxBatches int
	MaxSamples int
	// Commits is how many commits may run at once.
	Commits int
	// QueueBatches and QueueSamples bound what is submitted and not yet
	// committed (in a commit included). A queued sample holds 16 bytes of
	// time and value plus its share of the decoded request and, while
	// committing, of the encoded block: the default bound is a few tens of
	// megabytes, and several full commits' worth, so the bound only bites
	// when the database falls behind.
	QueueBatches int
	QueueSamples int
	// CommitTimeout bounds one commit. A commit that times out fails its
	// batches, whose submitters resend them.
	CommitTimeout time.Duration
	// Observer, when set, is told of every commit and every wait for
	// queue room (the operators' metrics).
	Observer Observer
}

// Observer is told what the committer does. Its methods are called from
// the committer's goroutines and must not block.
type Observer interface {
	// Committed reports one group commit: its batches and samples, how
	// long it gathered batches after its first, how long the store took,
	// and how many of its batches failed (their submitters resend them).
	Committed(batches, samples int, gathered, took time.Duration, failed int)
	// Backpressured reports a Submit that had to wait for queue room.
	Backpressured()
}

func (c Config) withDefaults() Config {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	set(&c.MaxBatches, DefaultMaxBatches)
	set(&c.MaxSamples, DefaultMaxSamples)
	set(&c.Commits, DefaultCommits)
	set(&c.QueueBatches, DefaultQueueBatches)
	set(&c.QueueSamples, DefaultQueueSamples)
	return c
}

// ErrClosed is returned by Submit after Close has begun.
var ErrClosed = errors.New("ingest: the committer is shutting down")

// Committer gathers batches into group commits. It is safe for concurrent
// use.
type Committer struct {
	st  *store.Store
	cfg Config

	// samples bounds queued samples; queue (its capacity) bounds queued
	// batches.
	samples *semaphore.Weighted
	queue   chan *Ticket
	queued  atomic.Int64 // samples submitted and not yet committed

	mu     sync.RWMutex // held for reading while sending on queue
	closed bool

	ctx    context.Context // ends only when Close gives up waiting
	cancel context.CancelFunc
	done   chan struct{} // closed when every commit has ended
}

// New starts a committer writing to st.
func New(st *store.Store, cfg Config) *Committer {
	cfg = cfg.withDefaults()
	c := &Committer{
		st:      st,
		cfg:     cfg,
		samples: semaphore.NewWeighted(int64(cfg.QueueSamples)),
		queue:   make(chan *Ticket, cfg.QueueBatches),
		done:    make(chan struct{}),
	}
	// Commits run on a context of their own, not a stream's: a client
	// that goes away must not abort a transaction that holds other
	// clients' batches.
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c
}

// Config returns the limits in force, defaults filled in.
func (c *Committer) Config() Config { return c.cfg }

// QueuedSamples is how many samples are submitted and not yet committed,
// commits in flight included: the queue that backpressure bounds by
// Config.QueueSamples.
func (c *Committer) QueuedSamples() int64 { return c.queued.Load() }

// Ticket is a submitted batch awaiting its commit.
type Ticket struct {
	batch  *charting.SampleBatch
	weight int64
	done   chan store.SampleResult // buffered: the committer never blocks on it
}

// Wait returns the batch's result once its commit has ended, or ctx's
// error if ctx ends first (the batch may still be committed).
func (t *Ticket) Wait(ctx context.Context) (store.SampleResult, error) {
	select {
	case r := <-t.done:
		t.done <- r // Wait may be called again
		return r, nil
	case <-ctx.Done():
		return store.SampleResult{}, ctx.Err()
	}
}

// Submit queues b for the next commit. b.Actor must be the principal that
// sent it; the committer owns b from now on. Submit blocks while the queue
// is full, until there is room or ctx ends (then it returns ctx's error
// and b is not queued).
func (c *Committer) Submit(ctx context.Context, b *charting.SampleBatch) (*Ticket, error) {
	// A batch weighs its samples (at least 1, at most the whole bound, so
	// an oversized one — refused by validation anyway — cannot wait
	// forever).
	w := min(max(int64(b.SampleCount()), 1), int64(c.cfg.QueueSamples))
	if !c.samples.TryAcquire(w) {
		if c.cfg.Observer != nil {
			c.cfg.Observer.Backpressured()
		}
		if err := c.samples.Acquire(ctx, w); err != nil {
			return nil, err
		}
	}
	t := &Ticket{batch: b, weight: w, done: make(chan store.SampleResult, 1)}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		c.samples.Release(w)
		return nil, ErrClosed
	}
	select {
	case c.queue <- t:
		c.queued.Add(w)
		return t, nil
	case <-ctx.Done():
		c.samples.Release(w)
		return nil, ctx.Err()
	}
}

// Close stops accepting batches, commits everything already queued and
// waits for the commits to end. If ctx ends first, commits in flight are
// cancelled (their submitters see an error and resend) and Close returns
// ctx's error once they have ended.
func (c *Committer) Close(ctx context.Context) error {
	c.mu.Lock() // waits for Submits that are handing over a batch
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	select {
	case <-c.done:
		c.cancel()
		return nil
	case <-ctx.Done():
		c.cancel()
		<-c.done
		return ctx.Err()
	}
}

// run forms commits: it waits for a free commit slot, then for a first
// batch, then gathers more until a limit or MaxDelay, and hands the group
// to a commit goroutine.
func (c *Committer) run() {
	defer close(c.done)
	slots := make(chan struct{}, c.cfg.Commits)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		slots <- struct{}{}
		first, ok := <-c.queue
		if !ok {
			return
		}
		group, samples := []*Ticket{first}, first.weight
		open := true
		gatherStart := time.Now()
		timer.Reset(c.cfg.MaxDelay)
	gather:
		for len(group) < c.cfg.MaxBatches && samples < int64(c.cfg.MaxSamples) {
			select {
			case t, ok := <-c.queue:
				if !ok {
					open = false
					break gather
				}
				group = append(group, t)
				samples += t.weight
			case <-timer.C:
				break gather
			}
		}
		if !timer.Stop() {
			select { // drain a fire that raced with Stop
			case <-timer.C:
			default:
			}
		}
		gathered := time.Since(gatherStart)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.commit(group, gathered)
			<-slots
		}()
		if !open {
			return
		}
	}
}

// commit stores one group and hands every ticket its result.
func (c *Committer) commit(group []*Ticket, gathered time.Duration) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommitTimeout)
	defer cancel()
	batches := make([]*charting.SampleBatch, len(group))
	var weight int64
	samples := 0
	for i, t := range group {
		batches[i] = t.batch
		weight += t.weight
		samples += t.batch.SampleCount()
	}
	start := time.Now()
	res := c.st.AppendSampleBatches(ctx, batches)
	took := time.Since(start)
	failed := 0
	for i, t := range group {
		if res[i].Err != nil {
			failed++
		}
		t.done <- res[i] // AppendSampleBatches returns one result per batch
		t.batch = nil    // the ticket may outlive its stream; the batch need not
	}
	c.queued.Add(-weight)
	c.samples.Release(weight)
	if c.cfg.Observer != nil {
		c.cfg.Observer.Committed(len(group), samples, gathered, took, failed)
	}
}

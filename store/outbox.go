package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// The delivery outbox. Signing a case, and each later signature or addendum,
// queues the case's exports (an HL7 v2 ORU^R01 to the interface engine, a
// FHIR transaction Bundle to a FHIR server) in the same transaction as the
// signature or addendum itself: a record version that was acknowledged as
// signed is always also queued for delivery, and nothing is queued for a
// write that rolled back. A worker (package export) claims queued
// deliveries, sends them, and records the outcome here.
//
// Outbox rows are operational state, not part of the record: they change
// state (pending → delivering → delivered or failed; pending or failed →
// superseded) and are not covered by the ledger. What they deliver is
// rendered from the record, which is immutable at the version they name.
//
// Order: the versions of one case reach one destination in version order.
// A delivery is claimed only when every earlier version of its case to its
// destination is settled: delivered (accepted by the receiver) or
// superseded (an operator said the later version replaces it,
// SupersedeDelivery). So a correction never overtakes the first final
// result it corrects, whatever happened to that one (AE, AR, timeouts, a
// restart, a person's retry days later). Destinations are independent: an
// HL7 delivery never waits for a FHIR one.

// Destination is where a delivery goes.
type Destination string

// Destinations.
const (
	// DestinationMLLP is an HL7 v2 ORU^R01 sent over MLLP.
	DestinationMLLP Destination = "hl7v2_mllp"
	// DestinationFHIR is a FHIR R4 transaction Bundle POSTed to a FHIR base
	// URL.
	DestinationFHIR Destination = "fhir_rest"
)

// Valid reports whether d is a known destination.
func (d Destination) Valid() bool { return d == DestinationMLLP || d == DestinationFHIR }

// DeliveryState is where a delivery is in its life.
type DeliveryState string

// Delivery states.
const (
	// DeliveryPending waits for its next attempt (NextAttemptAt).
	DeliveryPending DeliveryState = "pending"
	// DeliveryDelivering is claimed by a worker until LeaseUntil; a worker
	// that crashed leaves it so, and it is claimed again once the lease has
	// expired.
	DeliveryDelivering DeliveryState = "delivering"
	// DeliveryDelivered was accepted by the receiver (final).
	DeliveryDelivered DeliveryState = "delivered"
	// DeliveryFailed was refused by the receiver as wrong content (HL7 AE/CE,
	// HTTP 4xx): resending the same bytes would fail the same way, so it
	// waits for a person (RetryDelivery or SupersedeDelivery), and so do
	// the later versions of its case to its destination.
	DeliveryFailed DeliveryState = "failed"
	// DeliveryHeld waits for a complete patient identity: the renderers
	// refused the record for want of an MRN or its assigning authority
	// (export.ErrIdentityIncomplete). Sending it again would fail the same
	// way, so it is not retried; ReconcileIdentity on its case makes it
	// pending again. Like failed, it holds back the later versions of its
	// case to its destination.
	DeliveryHeld DeliveryState = "held"
	// DeliverySuperseded was never accepted and will not be sent: an
	// operator declared that a later version of the case, which carries the
	// whole record as it stood then, replaces it (final). It no longer holds
	// back the later versions.
	DeliverySuperseded DeliveryState = "superseded"
)

// Valid reports whether s is a known state.
func (s DeliveryState) Valid() bool {
	switch s {
	case DeliveryPending, DeliveryDelivering, DeliveryDelivered, DeliveryFailed, DeliveryHeld, DeliverySuperseded:
		return true
	}
	return false
}

// Delivery is one export of one record version to one destination.
type Delivery struct {
	// ID is derived from (CaseID, Version, Destination) by DeliveryID, so a
	// retried transaction queues the same row again and not a second one.
	ID     uuid.UUID
	CaseID uuid.UUID
	// Version is the ledger sequence of the signature or addendum that
	// queued it: the record is exported as it stood at that link.
	Version     int64
	Destination Destination
	// MessageID is what the receiver deduplicates on: MSH-10 for HL7, the
	// Bundle.identifier value for FHIR. Stable for (case, version,
	// destination), so every resend carries the same one.
	MessageID string
	State     DeliveryState
	// Attempts counts claims, including the one in progress. It is also the
	// fencing token of a claim (FinishDelivery).
	Attempts      int
	NextAttemptAt time.Time
	LeaseUntil    time.Time // while delivering
	// LastError is the last failure, as the worker described it (never
	// message content or patient data).
	LastError string
	// AckCode and AckText are the receiver's answer: the HL7 MSA-1 code and
	// the first ERR/MSA text; for FHIR the HTTP status code and a short
	// summary of the response.
	AckCode, AckText string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	DeliveredAt      time.Time
	// SupersededBy and SupersedeReason say who superseded the delivery and
	// why (state superseded; UpdatedAt is when).
	SupersededBy, SupersedeReason string
}

var deliveryNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:perfusion:outbox"))

// DeliveryID is the id of the delivery of (case, version, destination).
func DeliveryID(caseID uuid.UUID, version int64, dest Destination) uuid.UUID {
	return uuid.NewSHA1(deliveryNamespace, fmt.Appendf(nil, "%s/%d/%s", caseID, version, dest))
}

// OutboxConfig says which deliveries a new record version needs.
type OutboxConfig struct {
	// Destinations are the configured destinations; each new version gets
	// one delivery per destination.
	Destinations []Destination
	// MessageID derives a destination's message id (MSH-10, Bundle
	// identifier) for (case, version). It must be deterministic.
	MessageID func(dest Destination, caseID uuid.UUID, version int64) string
}

// OutboxTx is the outbox's write inside a record transaction. Both backends'
// transactions implement it; the Store finds it by type assertion.
type OutboxTx interface {
	// EnqueueDeliveries inserts pending deliveries. A delivery whose ID
	// exists is left as it is (a retried transaction, an idempotent
	// resend).
	EnqueueDeliveries(ctx context.Context, ds []Delivery) error
	// ReleaseHeld makes every held delivery of the case pending, due at
	// now, and returns how many it released.
	ReleaseHeld(ctx context.Context, caseID uuid.UUID, now time.Time) (int, error)
}

// OutboxBackend keeps the deliveries. Both store/postgres and store/sqlite
// implement it; use OutboxOf to find it on a Backend.
type OutboxBackend interface {
	// ClaimDeliveries marks up to limit deliveries to dest (any destination
	// when dest is empty) that are due as delivering until now+lease,
	// counts the attempt, and returns them with their new state. Due:
	// pending with NextAttemptAt <= now, or delivering with LeaseUntil <=
	// now (its worker died), and in order: every earlier version of the
	// same case to the same destination is delivered or superseded. Several
	// workers (several servers) may claim at once; no delivery is handed to
	// two of them while a lease runs (PostgreSQL: FOR UPDATE SKIP LOCKED),
	// and since a version waits until the earlier one is settled, two
	// versions of one case to one destination are never in flight at once.
	ClaimDeliveries(ctx context.Context, dest Destination, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// FinishDelivery records the outcome of the claim whose attempt count
	// was attempts: d's State (delivered, pending for a retry at
	// NextAttemptAt, or failed), LastError, AckCode, AckText, UpdatedAt and
	// DeliveredAt. It returns false, changing nothing, when the claim is no
	// longer current (its lease expired and another worker claimed the
	// delivery), so a late worker cannot overwrite a newer outcome.
	FinishDelivery(ctx context.Context, d *Delivery, attempts int) (bool, error)
	// GetDelivery reads one delivery; charting.ErrNotFound when absent.
	GetDelivery(ctx context.Context, id uuid.UUID) (*Delivery, error)
	// ListDeliveries returns deliveries matching f, newest first (created
	// at, then id, descending), at most f.Limit.
	ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error)
	// RequeueDelivery makes a pending or failed delivery pending again, due
	// at now, and returns it; charting.ErrNotFound when absent; a
	// charting.ErrPrecondition error when it is delivered or being
	// delivered.
	RequeueDelivery(ctx context.Context, id uuid.UUID, now time.Time) (*Delivery, error)
	// SupersedeDelivery marks a pending or failed delivery superseded by
	// actor for reason at now and returns it. It is refused
	// (charting.ErrPrecondition) unless a later version of the same case
	// to the same destination exists, and when the delivery is delivered
	// or being delivered; a delivery already superseded is returned as it
	// is; charting.ErrNotFound when absent.
	SupersedeDelivery(ctx context.Context, id uuid.UUID, actor, reason string, now time.Time) (*Delivery, error)
	// DeliveryBacklog counts the deliveries not yet settled — pending,
	// delivering, held, failed — by destination and state, with the oldest
	// one's creation time: what operators watch and page on.
	DeliveryBacklog(ctx context.Context) ([]BacklogRow, error)
}

// BacklogRow is one destination's deliveries in one unsettled state.
type BacklogRow struct {
	Destination Destination
	State       DeliveryState
	Count       int
	// Oldest is when the oldest of them was queued.
	Oldest time.Time
}

// BacklogStatesSQL lists the states DeliveryBacklog counts, for the
// backends' queries.
const BacklogStatesSQL = `('pending', 'delivering', 'held', 'failed')`

// DeliveryFilter selects deliveries. Zero values match anything.
type DeliveryFilter struct {
	CaseID uuid.UUID
	// Site keeps deliveries of cases of this site.
	Site  string
	State DeliveryState
	Limit int
	// After continues a listing after this delivery (keyset pagination).
	After *DeliveryCursor
}

// DeliveryCursor is a position in a delivery listing.
type DeliveryCursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// ErrNoOutbox is returned when deliveries are configured or asked for on a
// backend that does not keep an outbox.
var ErrNoOutbox = errors.New("store: backend keeps no delivery outbox")

// OutboxOf returns b's outbox.
func OutboxOf(b Backend) (OutboxBackend, error) {
	o, ok := capability[OutboxBackend](b)
	if !ok {
		return nil, ErrNoOutbox
	}
	return o, nil
}

// enqueueExports queues a new record version's deliveries in tx, when an
// outbox is configured.
func (s *Store) enqueueExports(ctx context.Context, tx Tx, caseID uuid.UUID, version int64, at time.Time) error {
	if s.outbox == nil || len(s.outbox.Destinations) == 0 {
		return nil
	}
	dests := s.outbox.Destinations
	otx, ok := tx.(OutboxTx)
	if !ok {
		return ErrNoOutbox
	}
	ds := make([]Delivery, 0, len(dests))
	for _, d := range dests {
		ds = append(ds, Delivery{ID: DeliveryID(caseID, version, d), CaseID: caseID, Version: version, Destination: d,
			MessageID: s.outbox.MessageID(d, caseID, version), State: DeliveryPending, NextAttemptAt: at, CreatedAt: at, UpdatedAt: at})
	}
	if err := otx.EnqueueDeliveries(ctx, ds); err != nil {
		return fmt.Errorf("queue exports: %w", err)
	}
	return nil
}

// ListDeliveries lists deliveries; next is nil on the last page.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) (ds []Delivery, next *DeliveryCursor, err error) {
	o, err := OutboxOf(s.b)
	if err != nil {
		return nil, nil, err
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 500)
	want := f.Limit
	f.Limit++
	ds, err = o.ListDeliveries(ctx, f)
	if err != nil {
		return nil, nil, fmt.Errorf("list deliveries: %w", err)
	}
	if len(ds) > want {
		ds = ds[:want]
		last := ds[want-1]
		next = &DeliveryCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return ds, next, nil
}

// GetDelivery reads one delivery.
func (s *Store) GetDelivery(ctx context.Context, id uuid.UUID) (*Delivery, error) {
	o, err := OutboxOf(s.b)
	if err != nil {
		return nil, err
	}
	d, err := o.GetDelivery(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get delivery: %w", err)
	}
	return d, nil
}

// RetryDelivery puts a failed (or pending) delivery back in the queue, due
// now. A delivered one, or one being delivered, is a precondition failure.
func (s *Store) RetryDelivery(ctx context.Context, id uuid.UUID) (*Delivery, error) {
	o, err := OutboxOf(s.b)
	if err != nil {
		return nil, err
	}
	d, err := o.RequeueDelivery(ctx, id, s.clock())
	if err != nil {
		return nil, fmt.Errorf("retry delivery: %w", err)
	}
	return d, nil
}

// SupersedeDelivery declares that a later version of the delivery's case
// replaces it at its destination: it is never sent, and the later versions
// stop waiting for it. For a delivery the receiver refused (AE, HTTP 4xx)
// or one that cannot get through, when an operator decides the later
// version suffices. Only an operator does this: a later version never
// supersedes an earlier one by itself, because the receiver may need each
// final result in turn (an F before its C).
func (s *Store) SupersedeDelivery(ctx context.Context, actor string, id uuid.UUID, reason string) (*Delivery, error) {
	var v charting.Violations
	if strings.TrimSpace(reason) == "" {
		v.Add("reason", "say why the later version replaces this delivery")
	} else if len(reason) > 1000 {
		v.Add("reason", "at most 1000 bytes")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	o, err := OutboxOf(s.b)
	if err != nil {
		return nil, err
	}
	d, err := o.SupersedeDelivery(ctx, id, actor, reason, s.clock())
	if err != nil {
		return nil, fmt.Errorf("supersede delivery: %w", err)
	}
	return d, nil
}

// SupersedeRefused is the error a backend's SupersedeDelivery returns for
// the delivery cur when it could not supersede it.
func SupersedeRefused(cur *Delivery, hasLater bool) error {
	switch cur.State {
	case DeliveryDelivered:
		return charting.Preconditionf("the delivery was accepted by the receiver; there is nothing to supersede")
	case DeliveryDelivering:
		return charting.Preconditionf("the delivery is being sent now; wait for its outcome")
	}
	if !hasLater {
		return charting.Preconditionf("no later version of the case is queued for this destination; retry the delivery instead")
	}
	return charting.Preconditionf("the delivery cannot be superseded in state %s", cur.State)
}

// RequeueRefused is the error a backend's RequeueDelivery returns for a
// delivery in state st.
func RequeueRefused(st DeliveryState) error {
	if st == DeliveryDelivered {
		return charting.Preconditionf("the delivery was accepted by the receiver; it is not sent again")
	}
	if st == DeliverySuperseded {
		return charting.Preconditionf("the delivery was superseded by a later version; it is not sent")
	}
	return charting.Preconditionf("the delivery is being sent now; wait for its outcome")
}

// Package storetest is the conformance suite every store backend runs: one
// set of behaviours, checked the same way on PostgreSQL and on the embedded
// SQLite store, in the spirit of trillian's storage tests. A backend that
// cannot offer a behaviour names it in Harness.Exceptions with the reason;
// the suite then reports that test as skipped with that reason, never as
// passed.
package storetest

import (
	"testing"
	"time"

	"perfusion/store"
)

// Harness adapts one backend to the suite.
type Harness struct {
	// Open returns a fresh, migrated, empty backend. The harness closes it
	// when the test ends.
	Open func(t *testing.T) store.Backend
	// Exec runs one plain SQL statement directly on the backend's database
	// with append-only enforcement in force, as any database user could.
	// Placeholders are $1, $2, …
	Exec func(t *testing.T, b store.Backend, sql string, args ...any) error
	// Tamper runs one SQL statement with append-only enforcement bypassed,
	// as an administrator with direct access could, and fails the test if
	// the statement fails. Placeholders are $1, $2, …
	Tamper func(t *testing.T, b store.Backend, sql string, args ...any)
	// Refuse makes the database itself refuse every sample batch of the
	// source from now on, as a constraint or a value it cannot store would:
	// a trigger raising an error whose message holds marker. The group
	// commit tests use it to fail one batch of a group at the database
	// rather than in validation.
	Refuse func(t *testing.T, b store.Backend, sourceID, marker string)
	// Exceptions maps a test name to why this backend cannot offer it.
	Exceptions map[string]string
}

type test struct {
	name string
	fn   func(t *testing.T, h *Harness)
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, h Harness) { run(t, h, nil) }

// RunOnly runs the named tests of the suite as subtests of t, for a
// backend variant that only needs a part of it proved (such as PostgreSQL
// as a serving role that does not own the tables). It fails t on a name
// the suite does not have.
func RunOnly(t *testing.T, h Harness, names ...string) {
	only := make(map[string]bool, len(names))
	for _, n := range names {
		only[n] = true
	}
	run(t, h, only)
}

func run(t *testing.T, h Harness, only map[string]bool) {
	tests := []test{
		{"CreateAndGetCase", testCreateAndGetCase},
		{"CreateCaseIdempotent", testCreateCaseIdempotent},
		{"ListCasesFiltersAndPages", testListCases},
		{"DetailsVersioned", testDetailsVersioned},
		{"Lifecycle", testLifecycle},
		{"SignOnce", testSignOnce},
		{"EntryIdempotent", testEntryIdempotent},
		{"LateEntryFlagged", testLateEntry},
		{"CorrectionsKeepHistory", testCorrections},
		{"InvalidInputStoresNothing", testInvalidInputStoresNothing},
		{"SamplesShuffledAndDuplicated", testSamplesShuffled},
		{"SamplesInvalidReadingsKept", testInvalidReadings},
		{"SamplesConflictingResend", testSampleConflict},
		{"SamplesGroupCommitAcrossCases", testGroupCommit},
		{"SamplesGroupCommitWatermarks", testGroupCommitWatermarks},
		{"SamplesGroupCommitRepeats", testGroupCommitRepeats},
		{"SamplesGroupCommitActors", testGroupCommitActors},
		{"SamplesGroupCommitsConcurrent", testGroupCommitsConcurrent},
		{"SamplesGroupCommitRefusedBatch", testGroupCommitRefusedBatch},
		{"SamplesGroupCommitDatabaseFailure", testGroupCommitDatabaseFailure},
		{"SamplesCommitterRefusedBatch", testCommitterRefusedBatch},
		{"BulkPrimitives", testBulkPrimitives},
		{"QuerySamples", testQuerySamples},
		{"SourceSummaries", testSourceSummaries},
		{"SamplesImplausibleStoredAndFlagged", testSamplesImplausible},
		{"SampleRuns", testSampleRuns},
		{"TamperRunsDetected", testTamperRuns},
		{"AuditTrail", testAuditTrail},
		{"VerifyIntactRecord", testVerifyIntact},
		{"TamperEntryDetected", testTamperEntry},
		{"TamperSamplesDetected", testTamperSamples},
		{"TamperCaseHeaderDetected", testTamperCaseHeader},
		{"TamperStatusDetected", testTamperStatus},
		{"UncoveredContentDetected", testUncoveredContent},
		{"DeletedContentDetected", testDeletedContent},
		{"AppendOnlyEnforced", testAppendOnly},
		{"TamperBatchSummaryDetected", testTamperBatchSummary},
		{"TamperCaseStateDetected", testTamperCaseState},
		{"CaseStateOnlyForward", testCaseStateForward},
		{"TamperTailTruncatedDetected", testTamperTailTruncated},
		{"ConcurrentWriters", testConcurrentWriters},
		{"VerifyDuringWrites", testVerifyDuringWrites},
		{"MetricsLifecycle", testMetricsLifecycle},
		{"MetricsQuery", testMetricsQuery},
		{"MetricsKeyset", testMetricsKeyset},
		{"MetricsAggregate", testMetricsAggregate},
		{"MetricsRepair", testMetricsRepair},
		{"MetricsUpgrade", testMetricsUpgrade},
		{"AccessEvents", testAccessEvents},
		{"BreakGlass", testBreakGlass},
		{"AccessChainVerifies", testAccessChainVerifies},
		{"AccessChainTamperDetected", testAccessChainTamper},
		{"AccessChainUpgrade", testAccessChainUpgrade},
		{"AccessReportSortsAndFilters", testAccessReport},
		{"IdentityReconciliation", testIdentityReconciliation},
		{"IdentityReconciliationTamperDetected", testIdentityReconciliationTamper},
		{"IdentityReconciliationBadInput", testIdentityReconciliationBadInput},
		{"OutboxEnqueue", testOutboxEnqueue},
		{"OutboxClaimLifecycle", testOutboxClaimLifecycle},
		{"OutboxConcurrentClaims", testOutboxConcurrentClaims},
		{"OutboxList", testOutboxList},
		{"OutboxBacklog", testOutboxBacklog},
		{"OutboxOrder", testOutboxOrder},
		{"WatchFeed", testWatchFeed},
		{"InboundJournal", testInboundJournal},
		{"InboundIndex", testInboundIndex},
		{"SealedReadsIdentical", testSealedReadsIdentical},
		{"SealedArchiveRoundTrip", testSealedArchiveRoundTrip},
		{"SealedTamperDetected", testSealedTamperDetected},
		{"SealedRemovalRefused", testSealedRemovalRefused},
	}
	for _, tc := range tests {
		if only != nil {
			if !only[tc.name] {
				continue
			}
			delete(only, tc.name)
		}
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := h.Exceptions[tc.name]; ok {
				t.Skipf("%s: not offered by this backend: %s", tc.name, why)
			}
			tc.fn(t, &h)
		})
	}
	for name := range only {
		t.Errorf("the suite has no test %q", name)
	}
}

// newStore opens a fresh backend with a controllable clock.
func newStore(t *testing.T, h *Harness) (*store.Store, store.Backend, *clock) {
	t.Helper()
	b := h.Open(t)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	return store.New(b, store.Config{Now: clk.now}), b, clk
}

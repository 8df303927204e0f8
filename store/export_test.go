package store

import "context"

// QuerySamplesNaive exposes the reference query path to the external tests
// and benchmarks, which compare the fast path against it.
func QuerySamplesNaive(s *Store) func(context.Context, SampleQuery) (*SampleQueryResult, error) {
	return s.querySamplesNaive
}

// SetQueryParts sets how many concurrent parts a bucketed query is split
// into (0: one per processor), for benchmarks comparing them.
func SetQueryParts(s *Store, n int) { s.queryParts = n }

// SetQueryRuns makes bucketed queries read chunk runs (the default) or
// ignore them and read every batch, for benchmarks to compare.
func SetQueryRuns(s *Store, on bool) { s.ignoreRuns = !on }

// RollupsUsed returns how many sealed frames' rollups trends have added.
func RollupsUsed(s *Store) int64 { return s.rollupsUsed.Load() }

// SetLegacyChunks makes the compactor write chunk rows as one-series
// samplecodec blocks, as before issue 21, for benchmarks to compare.
func SetLegacyChunks(s *Store, on bool) { s.legacyChunks = on }

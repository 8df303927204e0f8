package store

import "context"

// QuerySamplesNaive exposes the reference query path to the external tests
// and benchmarks, which compare the fast path against it.
func QuerySamplesNaive(s *Store) func(context.Context, SampleQuery) (*SampleQueryResult, error) {
	return s.querySamplesNaive
}

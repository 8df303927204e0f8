package store

// Wrapper is a Backend that wraps another (a test's retrying backend, an
// instrumented one); the optional capabilities (outbox, access audit,
// metrics, commit relay) are looked up through it.
type Wrapper interface {
	Backend
	Unwrap() Backend
}

// capability returns b, or the first backend it wraps, as a T: the
// optional interfaces a backend offers beside Backend.
func capability[T any](b Backend) (T, bool) {
	for {
		if c, ok := b.(T); ok {
			return c, true
		}
		w, ok := b.(Wrapper)
		if !ok {
			var zero T
			return zero, false
		}
		b = w.Unwrap()
	}
}

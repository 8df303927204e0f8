package server

import "time"

// Observer is told what the server does, for the operators' metrics
// (perfusion/server/metrics implements it). Its methods are called on
// the calls' goroutines and must not block.
type Observer interface {
	// CallStarted and CallEnded bracket every call, unary or stream; the
	// code is the gRPC status code's name ("OK", "Unavailable").
	CallStarted(method string)
	CallEnded(method, code string, took time.Duration)
	// SamplesAcked reports one acknowledged sample batch: its samples
	// and the time from its arrival to its acknowledgement.
	SamplesAcked(samples int, latency time.Duration)
	// AuditWriteFailed reports an access-audit write that failed (the
	// call it was for was failed with it).
	AuditWriteFailed()
}

// noObserver is the Observer of a server without metrics.
type noObserver struct{}

func (noObserver) CallStarted(string)                      {}
func (noObserver) CallEnded(string, string, time.Duration) {}
func (noObserver) SamplesAcked(int, time.Duration)         {}
func (noObserver) AuditWriteFailed()                       {}

package main

import (
	"log/slog"
	"runtime/debug"
)

// The garbage collector's defaults (GOGC=100, no memory limit) suit a
// program whose heap is most of its memory. perfusiond's live heap is small
// (≈ 60 MiB with 1,000 streams) but it runs a goroutine or two per stream,
// and every collection scans all their stacks: at the default pace that was
// a sixth of the server's CPU and a visible share of the acknowledgement
// tail. A higher GOGC collects a third as often; the memory limit turns the
// collector back on early when the heap nears it, so the ceiling stays
// bounded whatever GOGC allows (the ingest queue, not GOGC, bounds the live
// heap).
const (
	defaultGCPercent   = 300
	defaultMemoryLimit = 384 << 20 // bytes; soft, counts all Go-managed memory
)

// tuneGC applies the defaults above unless the operator set GOGC or
// GOMEMLIMIT, which the runtime has then applied already.
func tuneGC(getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	limit := debug.SetMemoryLimit(-1) // a negative limit only reads it
	log.Info("garbage collector", "gogc_env", getenv("GOGC"), "memory_limit_bytes", limit)
}

// Command loadgen measures perfusiond under the load of many concurrent
// cases (issue 4): how many device samples per second it sustains, how
// long a gateway waits for each acknowledgement, what the server costs in
// CPU and memory, how many bytes a stored sample takes, how that compares
// with storing one row per sample in the same PostgreSQL, and how fast the
// trend query of a long case answers.
//
// It talks to a running server (--addr, with --server-pid for CPU and RSS)
// or builds and launches its own (--spawn) on a fresh PostgreSQL database
// (--database-url; created and dropped, so the stored size is the run's
// alone) or on a temporary embedded store. It only talks to loopback
// addresses, sends for --duration and stops by itself.
//
// Two scenarios:
//
//	go run ./clients/loadgen --spawn --database-url URL --cases 1000 --duration 30s
//	    real time: every stream sends one batch per second, as gateways
//	    do; the figure that matters is acknowledgement latency.
//	go run ./clients/loadgen --spawn --database-url URL --cases 100 --max-rate --duration 20s
//	    max rate: every stream sends as fast as its window of in-flight
//	    batches allows; the figure that matters is samples per second.
//
// Add --history 4h to query a 4-hour case, --json for machine-readable
// output. The exit status is 0 only when the run was clean (samples
// acknowledged, no errors, every phase measured).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command with its outside world explicit, for tests.
// Progress goes to stderr, the report to stdout.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	rep, err := run(ctx, c, stderr)
	if rep != nil {
		rep.finish()
		if err != nil {
			rep.OK = false
		}
		write := rep.writeText
		if c.json {
			write = rep.writeJSON
		}
		if werr := write(stdout); werr != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	if !rep.OK {
		return 1
	}
	return 0
}

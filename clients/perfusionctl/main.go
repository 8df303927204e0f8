// Command perfusionctl is the command-line client of the perfusion record
// service (perfusiond): every task a person does without the charting
// tablet — creating, listing, closing and signing cases, charting and
// correcting entries, verifying a record and reading its audit trail, and
// looking at device trends.
//
// Usage:
//
//	perfusionctl [global flags] <command> [<subcommand>] [flags] [args]
//
// Run "perfusionctl help" for the command list and "perfusionctl help
// <command>" (or "<command> --help") for a command's flags and examples.
//
// # Exit codes
//
//	0  success
//	1  error (including invalid input refused by the server; its field
//	   violations are printed one per line)
//	2  usage: unknown command, bad or missing flag
//	3  not found (unknown case or entry)
//	4  failed precondition or conflict: lifecycle misuse (e.g. charting on
//	   a closed case), a concurrent change (Aborted), or an id reused for
//	   different content (AlreadyExists)
//	5  record verification failed (record verify)
//	6  server unavailable, or the --timeout ran out
//
// The command tree is built on the standard library's flag package rather
// than a framework: it keeps go.mod untouched, the tree is small, and the
// same tree drives help and shell completion.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

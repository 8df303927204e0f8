// Command perfusiond is the perfusion record server. It only wires things
// together: flags and environment into a config, a store backend
// (PostgreSQL with --database-url, else the embedded SQLite file), the
// gRPC server of package server, logging and signals. Every rule lives in
// charting, store and server.
//
// Usage:
//
//	perfusiond [serve] [flags]       serve gRPC (the default command)
//	perfusiond migrate [flags]       apply migrations, print the schema version
//	perfusiond token --subject N --roles R   print a development token
//	perfusiond backup --to FILE      copy the embedded store while it runs
//	perfusiond --version             print the version
//
// Run `perfusiond <command> -h` for each command's flags. Flags override
// environment variables (PERFUSION_*), which override defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stopSignals: stop, devHeaderAuth: devHeaderAuthBuilt}
	os.Exit(a.run(ctx, os.Args[1:]))
}

// app is one invocation of the command, with its outside world made
// explicit so tests can run it in-process.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stopSignals restores default signal handling once shutdown has begun,
	// so a second Ctrl-C ends the process at once. Nil in tests.
	stopSignals func()
	// onListen, when set, is told the address the server listens on (tests
	// listen on port 0).
	onListen func(net.Addr)
	// onWebListen, when set, is told the browser face's address before
	// onListen is called.
	onWebListen func(net.Addr)
	// onMetricsListen, when set, is told the metrics endpoint's address.
	onMetricsListen func(net.Addr)
	// onInboundListen, when set, is told the address of the inbound HL7
	// listener (inbound.go).
	onInboundListen func(string)
	// devHeaderAuth: this build has the --dev-header-auth switch (build
	// tag devauth; see devauth_on.go). Tests set it to exercise both.
	devHeaderAuth bool
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// run dispatches to a command and returns the process exit code.
func (a *app) run(ctx context.Context, args []string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = a.serve(ctx, args)
	case "migrate":
		err = a.migrate(ctx, args)
	case "token":
		err = a.token(ctx, args)
	case "backup":
		err = a.backup(ctx, args)
	case "export":
		err = a.export(ctx, args)
	case "import":
		err = a.importArchives(ctx, args)
	case "version":
		a.printVersion()
	case "help":
		fmt.Fprint(a.stdout, usage)
	default:
		fmt.Fprintf(a.stderr, "perfusiond: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(a.stderr, "perfusiond %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "perfusiond %s: %v\n", cmd, err)
		return exitError
	}
}

// errUsage marks errors in how the command was called.
var errUsage = errors.New("usage")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

const usage = `perfusiond — the perfusion record server

Commands:
  serve      serve gRPC (default)
  migrate    apply the embedded schema migrations and print the schema version
  token      print a development token signed by the key in the data directory
  backup     write a consistent copy of the embedded store (--to FILE)
  export     write case archives from the selected store (--to DIR [--case ID])
  import     verify and load case archives into the selected store (--from FILE|DIR)
  version    print the version

Run 'perfusiond <command> -h' for flags.
`

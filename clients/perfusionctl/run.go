package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"perfusion/clients/perfusion"
)

// Exit codes; see the package documentation.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitConflict    = 4
	exitVerifyFail  = 5
	exitUnavailable = 6
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	addr      string
	principal string
	creds     perfusion.Credentials
	output    string
	timeout   time.Duration
}

// env is what a command runs with.
type env struct {
	g      *globals
	stdout io.Writer
	stderr io.Writer
	// dial makes the client on first use (commands such as help and
	// completion never dial).
	dial   func(ctx context.Context) (*perfusion.Client, error)
	client *perfusion.Client
}

func (e *env) Client(ctx context.Context) (*perfusion.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	c, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

func (e *env) json() bool { return e.g.output == "json" }

// emit prints a response message as protojson when --output json.
func (e *env) emit(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, string(b))
	return err
}

// command is a node of the command tree. A node has either subcommands or
// a setup (a leaf).
type command struct {
	name     string
	summary  string
	args     string // positional arguments, for the usage line
	long     string
	examples []string
	subs     []*command
	// setup defines the leaf's flags and returns what runs it.
	setup func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
	// hidden commands are left out of help and completion.
	hidden bool
	// live commands run until their work ends or the user stops them, so
	// --timeout does not apply (case watch).
	live bool
}

// usageError is a mistake in the command line: exit 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError carries an exit code chosen by a command (verification failed).
type exitCodeError struct {
	code int
	msg  string
}

func (x exitCodeError) Error() string { return x.msg }

func defineGlobals(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.addr, "addr", g.addr, "server address host:port, or several separated by commas, tried in turn when one is down (env PERFUSION_ADDR)")
	fs.StringVar(&g.principal, "principal", g.principal, "development only: who you are, sent as x-perfusion-principal to a test build of perfusiond (-tags devauth) run with --dev-header-auth (env PERFUSION_PRINCIPAL)")
	fs.StringVar(&g.creds.TokenFile, "token-file", g.creds.TokenFile, "file holding your bearer token (JWT); default: env "+perfusion.EnvToken)
	fs.StringVar(&g.creds.CAFile, "ca-file", g.creds.CAFile, "CA certificate(s) verifying the server; implies TLS")
	fs.StringVar(&g.creds.CertFile, "cert", g.creds.CertFile, "client certificate for mutual TLS")
	fs.StringVar(&g.creds.KeyFile, "key", g.creds.KeyFile, "client certificate's key")
	fs.StringVar(&g.creds.ServerName, "server-name", g.creds.ServerName, "server name to verify, when it differs from --addr's host")
	fs.BoolVar(&g.creds.TLS, "tls", g.creds.TLS, "use TLS with the system's CAs")
	fs.StringVar(&g.output, "output", g.output, "output format: table, json (protojson of the responses) or csv (review commands; others print tables)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline for the whole command")
}

// run runs perfusionctl with args (without the program name) and returns
// the exit code. dialOpts are for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, dialOpts ...perfusion.Option) int {
	g := &globals{addr: "127.0.0.1:7070", output: "table", timeout: 30 * time.Second}
	if v := os.Getenv("PERFUSION_ADDR"); v != "" {
		g.addr = v
	}
	g.principal = os.Getenv("PERFUSION_PRINCIPAL")
	e := &env{g: g, stdout: stdout, stderr: stderr}
	e.dial = func(ctx context.Context) (*perfusion.Client, error) {
		c := g.creds
		c.Principal = g.principal
		copts, err := c.Options(os.Getenv)
		if err != nil {
			return nil, usagef("%v", err)
		}
		opts := append(copts, dialOpts...)
		return perfusion.Dial(ctx, g.addr, opts...)
	}
	defer func() {
		if e.client != nil {
			e.client.Close()
		}
	}()
	root := commandTree()
	if len(args) > 0 && args[0] == "__complete" {
		for _, c := range complete(root, args[1:]) {
			fmt.Fprintln(stdout, c)
		}
		return exitOK
	}

	// Global flags before the command.
	top := flag.NewFlagSet("perfusionctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	defineGlobals(top, g)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, root, nil)
			return exitOK
		}
		fmt.Fprintf(stderr, "perfusionctl: %v\n", err)
		fmt.Fprintln(stderr, "Run 'perfusionctl help' for usage.")
		return exitUsage
	}
	rest := top.Args()
	// Walk the tree.
	node, path := root, []*command{}
	for node.setup == nil {
		if len(rest) == 0 {
			printHelp(stderr, node, path)
			return exitUsage
		}
		word := rest[0]
		if word == "help" {
			// "help entry add", "entry help add" and "entry add help"
			// (below) all show the help of entry add.
			target, tpath, err := find(node, pathString(path), rest[1:])
			if err != nil {
				fmt.Fprintf(stderr, "perfusionctl: %v\n", err)
				return exitUsage
			}
			printHelp(stdout, target, append(path, tpath...))
			return exitOK
		}
		if word == "-h" || word == "--help" || word == "-help" {
			printHelp(stdout, node, path)
			return exitOK
		}
		if strings.HasPrefix(word, "-") {
			// Global flags between command words.
			mid := flag.NewFlagSet("perfusionctl", flag.ContinueOnError)
			mid.SetOutput(io.Discard)
			defineGlobals(mid, g)
			if err := mid.Parse(rest); err != nil {
				fmt.Fprintf(stderr, "perfusionctl %s: %v\n", pathString(path), err)
				return exitUsage
			}
			rest = mid.Args()
			continue
		}
		next := child(node, word)
		if next == nil {
			fmt.Fprintf(stderr, "perfusionctl: unknown command %q\n", strings.TrimSpace(pathString(path)+" "+word))
			printHelp(stderr, node, path)
			return exitUsage
		}
		node, path, rest = next, append(path, next), rest[1:]
	}
	fs := flag.NewFlagSet("perfusionctl "+pathString(path), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runLeaf := node.setup(fs)
	defineGlobals(fs, g)
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, node, path)
			return exitOK
		}
		fmt.Fprintf(stderr, "perfusionctl %s: %v\n", pathString(path), err)
		fmt.Fprintf(stderr, "Run 'perfusionctl help %s' for usage.\n", pathString(path))
		return exitUsage
	}
	if len(pos) == 1 && pos[0] == "help" {
		// No command takes "help" as an argument (they take ids, kinds
		// and enum names), so "case show help" asks for help.
		printHelp(stdout, node, path)
		return exitOK
	}
	if g.output != "table" && g.output != "json" && g.output != "csv" {
		fmt.Fprintf(stderr, "perfusionctl: --output must be table, json or csv, not %q\n", g.output)
		return exitUsage
	}
	if g.timeout > 0 && !node.live {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	err = runLeaf(ctx, e, pos)
	return report(stderr, path, err)
}

// report prints err and maps it to an exit code.
func report(stderr io.Writer, path []*command, err error) int {
	if err == nil {
		return exitOK
	}
	name := "perfusionctl " + pathString(path)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %s\n", name, ue.msg)
		fmt.Fprintf(stderr, "Run 'perfusionctl help %s' for usage.\n", pathString(path))
		return exitUsage
	}
	var xe exitCodeError
	if errors.As(err, &xe) {
		fmt.Fprintf(stderr, "%s: %s\n", name, xe.msg)
		return xe.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "%s: timed out (--timeout); is the server at the address reachable?\n", name)
		return exitUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	if vs := perfusion.FieldViolations(err); len(vs) > 0 {
		fmt.Fprintf(stderr, "%s: invalid request, the server refused %d field(s):\n", name, len(vs))
		for _, v := range vs {
			fmt.Fprintf(stderr, "  %s: %s\n", v.GetField(), v.GetDescription())
		}
	} else {
		fmt.Fprintf(stderr, "%s: %s\n", name, statusText(st))
	}
	switch st.Code() {
	case codes.NotFound:
		return exitNotFound
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		return exitConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	}
	return exitError
}

// statusText is what a person reads of a refusal: the code in words, once,
// then the server's message. Servers (this one before, others still) may
// start their message with those words themselves; they are not repeated.
// A list refused for want of a site names the --site flag every list
// command has.
func statusText(st *status.Status) string {
	prefix, msg := codeText(st.Code()), st.Message()
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == reasonSiteRequired && ei.GetMetadata()["sites"] != "" {
			sites := strings.Split(ei.GetMetadata()["sites"], ",")
			return fmt.Sprintf("%s: you reach several sites (%s): choose one with --site, e.g. --site %s",
				prefix, strings.Join(sites, ", "), sites[0])
		}
	}
	if len(msg) >= len(prefix) && strings.EqualFold(msg[:len(prefix)], prefix) &&
		(len(msg) == len(prefix) || msg[len(prefix)] == ':') {
		return msg
	}
	return prefix + ": " + msg
}

// reasonSiteRequired is the server's google.rpc.ErrorInfo reason for a
// list without a site from a caller with several (server.ReasonSiteRequired).
const reasonSiteRequired = "SITE_REQUIRED"

func codeText(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid request"
	case codes.NotFound:
		return "not found"
	case codes.FailedPrecondition:
		return "not allowed now"
	case codes.Aborted:
		return "changed concurrently"
	case codes.AlreadyExists:
		return "id already used"
	case codes.Unavailable:
		return "server unavailable"
	case codes.DeadlineExceeded:
		return "timed out"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.Unauthenticated:
		return "not authenticated"
	}
	return strings.ToLower(c.String())
}

// parseInterleaved parses flags anywhere among positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func child(n *command, name string) *command {
	for _, c := range n.subs {
		if c.name == name {
			return c
		}
	}
	return nil
}

// find walks words down from start, at the command path prefix; the path
// it returns is relative to start.
func find(start *command, prefix string, words []string) (*command, []*command, error) {
	node, path := start, []*command{}
	for _, w := range words {
		if w == "help" {
			continue // "help entry help add"
		}
		next := child(node, w)
		if next == nil {
			return nil, nil, fmt.Errorf("unknown command %q", strings.Join(strings.Fields(prefix+" "+pathString(path)+" "+w), " "))
		}
		node, path = next, append(path, next)
	}
	return node, path, nil
}

func pathString(path []*command) string {
	var s []string
	for _, c := range path {
		s = append(s, c.name)
	}
	return strings.Join(s, " ")
}

func printHelp(w io.Writer, n *command, path []*command) {
	name := strings.TrimSpace("perfusionctl " + pathString(path))
	if n.summary != "" {
		fmt.Fprintf(w, "%s — %s\n\n", name, n.summary)
	}
	if n.setup == nil {
		fmt.Fprintf(w, "Usage:\n  %s <command> [flags]\n", name)
		if n.long != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(n.long))
		}
		fmt.Fprintf(w, "\nCommands:\n")
		for _, c := range n.subs {
			if !c.hidden {
				fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
			}
		}
	} else {
		fmt.Fprintf(w, "Usage:\n  %s [flags] %s\n", name, n.args)
		if n.long != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(n.long))
		}
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		n.setup(fs)
		if hasFlags(fs) {
			fmt.Fprintf(w, "\nFlags:\n")
			printFlags(w, fs)
		}
	}
	examples := n.examples
	if len(path) == 0 {
		examples = rootExamples
	}
	if len(examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, ex := range examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
	gfs := flag.NewFlagSet("", flag.ContinueOnError)
	defineGlobals(gfs, &globals{addr: "127.0.0.1:7070", output: "table", timeout: 30 * time.Second})
	fmt.Fprintf(w, "\nGlobal flags (before or after the command):\n")
	printFlags(w, gfs)
	if len(path) == 0 {
		fmt.Fprint(w, exitCodeHelp)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	var fl []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { fl = append(fl, f) })
	sort.Slice(fl, func(i, j int) bool { return fl[i].Name < fl[j].Name })
	for _, f := range fl {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%-18s %s%s\n", f.Name, f.Usage, def)
	}
}

const exitCodeHelp = `
Exit codes:
  0  ok
  1  error (input refused by the server: field violations are printed)
  2  usage (unknown command, bad or missing flag)
  3  not found (unknown case or entry)
  4  failed precondition or conflict (lifecycle, concurrent change, id reuse)
  5  record verification failed
  6  server unavailable or --timeout ran out
`

// call runs one RPC and writes its response: the protojson for --output
// json, else what show prints. Most commands are exactly this.
func call[R proto.Message](ctx context.Context, e *env, rpc func(*perfusion.Client) (R, error), show func(R) error) error {
	c, err := e.Client(ctx)
	if err != nil {
		return err
	}
	resp, err := rpc(c)
	if err != nil {
		return err
	}
	if e.json() {
		return e.emit(resp)
	}
	return show(resp)
}

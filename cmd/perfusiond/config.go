package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables read by the commands. A flag given on the command
// line wins over its variable.
const (
	envDatabaseURL       = "PERFUSION_DATABASE_URL"
	envDataDir           = "PERFUSION_DATA_DIR"
	envListen            = "PERFUSION_LISTEN"
	envLogFormat         = "PERFUSION_LOG_FORMAT"
	envLogLevel          = "PERFUSION_LOG_LEVEL"
	envMigrate           = "PERFUSION_MIGRATE"
	envShutdownTimeout   = "PERFUSION_SHUTDOWN_TIMEOUT"
	envReadinessInterval = "PERFUSION_READINESS_INTERVAL"
)

// dbFileName is the embedded store's file inside the data directory.
const dbFileName = "perfusion.db"

// common is what every command takes: where the store is, how to log.
type common struct {
	databaseURL string
	dataDir     string
	logFormat   string
	logLevel    string
	version     bool
}

// newFlagSet returns a flag set for cmd that reports errors instead of
// exiting, so run decides the exit code.
func (a *app) newFlagSet(cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("perfusiond "+cmd, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: perfusiond %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// envFlags maps flag names to the environment variables that supply them
// when the command line does not.
type envFlags map[string]string

// commonFlags registers the store and logging flags on fs, recording their
// variables in env.
func (a *app) commonFlags(fs *flag.FlagSet, env envFlags) *common {
	c := &common{}
	// Defaults shown by -h are static: a variable's value, which for
	// --database-url may hold a password, is never printed.
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL connection string; selects the PostgreSQL store (env "+envDatabaseURL+")")
	fs.StringVar(&c.dataDir, "data-dir", a.defaultDataDir(), "directory of the embedded SQLite store, used without --database-url (env "+envDataDir+")")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or text (env "+envLogFormat+")")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error (env "+envLogLevel+")")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	env["database-url"], env["data-dir"], env["log-format"], env["log-level"] = envDatabaseURL, envDataDir, envLogFormat, envLogLevel
	return c
}

// parse parses args, then fills every flag the command line left unset
// from its environment variable, with the flag's own parsing, so a bad
// value is reported naming the variable. Positional arguments are refused:
// every setting is a named flag, so a misplaced value cannot be silently
// ignored.
func (a *app) parse(fs *flag.FlagSet, env envFlags, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, key := range env {
		v := a.getenv(key)
		if set[name] || v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return usageErrorf("%s: %v", key, err)
		}
	}
	return nil
}

// defaultDataDir follows the XDG base directory spec for state: data the
// service keeps between runs that is not user configuration.
func (a *app) defaultDataDir() string {
	if d := a.getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "perfusion")
	}
	if home := a.getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "state", "perfusion")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", "perfusion")
	}
	return "data"
}

// logger builds the process logger on w.
func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.logFormat) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: want json or text", c.logFormat)
}

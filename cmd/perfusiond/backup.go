package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"perfusion/store/sqlite"
)

// backup writes a consistent copy of the embedded store while a server may
// be running on it. PostgreSQL has its own tools (pg_basebackup, WAL
// archiving), so the command refuses --database-url.
func (a *app) backup(ctx context.Context, args []string) error {
	fs := a.newFlagSet("backup", "backup --to FILE [flags]")
	env := envFlags{}
	c := a.commonFlags(fs, env)
	var to string
	fs.StringVar(&to, "to", "", "file to write the copy to; must not exist (required)")
	if err := a.parse(fs, env, args); err != nil {
		return err
	}
	if c.version {
		a.printVersion()
		return nil
	}
	switch {
	case to == "":
		return usageErrorf("--to FILE is required")
	case c.databaseURL != "":
		return usageErrorf("backup copies the embedded store only; back up PostgreSQL with pg_basebackup or WAL archiving")
	}
	log, err := c.logger(a.stderr)
	if err != nil {
		return err
	}
	path, err := filepath.Abs(filepath.Join(c.dataDir, dbFileName))
	if err != nil {
		return fmt.Errorf("embedded store path: %w", err)
	}
	// Opening would create an empty store; a backup of nothing must fail.
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no embedded store at %s (check --data-dir)", path)
		}
		return fmt.Errorf("embedded store: %w", err)
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("open embedded store: %w", err)
	}
	defer closeDatabase(db, log)
	if err := db.Backup(ctx, to); err != nil {
		return err
	}
	log.Info("backup written", "from", path, "to", to)
	fmt.Fprintf(a.stdout, "backup of %s written to %s\n", path, to)
	return nil
}

package main

import (
	"context"
	"fmt"
)

// migrate applies the embedded migrations to the selected store and prints
// the schema version, for operators who migrate before rolling out servers
// started with --migrate=false.
func (a *app) migrate(ctx context.Context, args []string) error {
	fs := a.newFlagSet("migrate", "migrate [flags]")
	env := envFlags{}
	c := a.commonFlags(fs, env)
	if err := a.parse(fs, env, args); err != nil {
		return err
	}
	if c.version {
		a.printVersion()
		return nil
	}
	log, err := c.logger(a.stderr)
	if err != nil {
		return err
	}
	db, err := openDatabase(ctx, c, log)
	if err != nil {
		return err
	}
	defer closeDatabase(db, log)
	v, err := prepareSchema(ctx, db, true, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s schema at version %d\n", db.Name(), v)
	return nil
}

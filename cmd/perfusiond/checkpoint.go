package main

import (
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"time"

	"perfusion/store"
	"perfusion/store/checkpoint"
	"perfusion/store/postgres"
)

// Environment variables of the record-integrity flags.
const (
	envCheckpointLog   = "PERFUSION_CHECKPOINT_LOG"
	envCheckpointKey   = "PERFUSION_CHECKPOINT_KEY"
	envCheckpointEvery = "PERFUSION_CHECKPOINT_INTERVAL"
)

// checkpointConfig is where the server anchors ledger heads outside the
// database (store/checkpoint).
type checkpointConfig struct {
	log, key string
	// every is how often the heads of open cases are checkpointed.
	every time.Duration
}

func checkpointFlags(fs *flag.FlagSet, env envFlags) *checkpointConfig {
	c := &checkpointConfig{}
	fs.StringVar(&c.log, "checkpoint-log", "",
		"append-only file of signed ledger heads, written at each close, signature and addendum; put it on another volume or host than the database; empty: <data-dir>/checkpoints.log; \"off\" disables it (env "+envCheckpointLog+")")
	fs.StringVar(&c.key, "checkpoint-key", "",
		"ed25519 private key (PKCS #8 PEM) that signs checkpoints, created when missing; empty: <data-dir>/checkpoint.key (env "+envCheckpointKey+")")
	fs.DurationVar(&c.every, "checkpoint-interval", time.Minute,
		"how often the ledger heads of open cases that moved are checkpointed too, so a tail cut from a case still being charted is detected; 0 turns it off (env "+envCheckpointEvery+")")
	env["checkpoint-log"], env["checkpoint-key"], env["checkpoint-interval"] = envCheckpointLog, envCheckpointKey, envCheckpointEvery
	return c
}

// anchor opens the checkpoint log, nil when it is off.
func (c *checkpointConfig) anchor(dataDir string, log *slog.Logger) (store.Anchor, error) {
	if c.log == "off" {
		log.Warn("checkpoint log off: a ledger tail cut in the database cannot be detected")
		return nil, nil
	}
	path, keyPath := c.log, c.key
	if path == "" {
		path = filepath.Join(dataDir, "checkpoints.log")
	}
	if keyPath == "" {
		keyPath = filepath.Join(dataDir, "checkpoint.key")
	}
	key, err := checkpoint.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	signer := checkpoint.NewSigner(key)
	log.Info("checkpoint log", "path", path, "key_id", checkpoint.KeyID(signer.Public()))
	return checkpoint.NewLog(path, signer), nil
}

// warnServingRole logs a warning when the server's PostgreSQL role could
// switch the record's append-only triggers off: it owns the tables (it ran
// the migrations) or is a superuser. The README deploys `serve` as a member
// of perfusion_app instead.
func warnServingRole(ctx context.Context, db database, log *slog.Logger) {
	pg, ok := db.(*postgres.Backend)
	if !ok {
		return // the embedded store's file is the process's own
	}
	r, err := pg.CheckServingRole(ctx)
	if err != nil {
		log.Warn("could not check the serving role's privileges", "err", err)
		return
	}
	if !r.Safe() {
		what := "owns the record's tables"
		if r.Superuser {
			what = "is a superuser"
		}
		log.Warn("the server's database role "+what+": it could disable the record's append-only triggers; "+
			"run migrations as the owner (perfusiond migrate) and serve as a role in perfusion_app",
			"superuser", r.Superuser, "owns_tables", r.OwnsRecord)
	}
}

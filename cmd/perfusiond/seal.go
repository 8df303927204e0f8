package main

import (
	"context"
	"flag"
	"time"

	"perfusion/store"
)

// Environment variables of the background sealer's flags.
const (
	envSealInterval = "PERFUSION_SEAL_INTERVAL"
	envSealAfter    = "PERFUSION_SEAL_AFTER"
)

// sealConfig is the background sealer's (store/sealer.go): closed cases
// rewritten into their sealed form (store/sealed.go).
type sealConfig struct {
	every time.Duration
	after time.Duration
}

func sealFlags(fs *flag.FlagSet, env envFlags) *sealConfig {
	c := &sealConfig{}
	fs.DurationVar(&c.every, "seal-interval", time.Minute,
		"how often closed and signed cases are looked for to seal: their device data rewritten into the dense sealed form, verified, in one transaction per case; 0 turns it off (env "+envSealInterval+")")
	fs.DurationVar(&c.after, "seal-after", store.DefaultSealAfter,
		"how long after its close a case is sealed (env "+envSealAfter+")")
	env["seal-interval"], env["seal-after"] = envSealInterval, envSealAfter
	return c
}

func (c *sealConfig) check() error {
	if c.every < 0 || c.after < 0 {
		return usageErrorf("--seal-interval and --seal-after must not be negative")
	}
	return nil
}

// start runs the sealer until ctx ends; the returned function waits for it
// to stop.
func (c *sealConfig) start(ctx context.Context, st *store.Store) (wait func()) {
	if c.every == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.RunSealer(ctx, c.every, c.after)
	}()
	return func() { <-done }
}

package server

import (
	"context"
	"time"
)

// readinessLoop checks the backend's readiness at once and then every
// ReadinessInterval, and flips the health status when it changes: a server
// whose database is unreachable or not migrated must not receive traffic,
// and must receive it again as soon as the database is back. It logs only
// changes, so a long outage does not flood the log. It returns when
// Shutdown cancels s.ctx.
func (s *Server) readinessLoop() {
	defer close(s.loopDone)
	ticker := time.NewTicker(s.cfg.ReadinessInterval)
	defer ticker.Stop()
	serving, first := false, true
	for {
		err := s.checkReady()
		if s.ctx.Err() != nil {
			return // shutting down: the failed check says nothing about the database
		}
		if ok := err == nil; ok != serving || first {
			serving, first = ok, false
			s.setServing(ok)
			if ok {
				s.log.Info("backend ready: serving", "backend", s.cfg.Store.Backend().Name())
			} else {
				s.log.Warn("backend not ready: not serving", "backend", s.cfg.Store.Backend().Name(), "err", err.Error())
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// checkReady asks the backend whether it is reachable and migrated, within
// one interval so a hung database cannot stall the loop, and gives up at
// once when Shutdown begins.
func (s *Server) checkReady() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadinessInterval)
	defer cancel()
	return s.cfg.Store.Backend().Ready(ctx)
}

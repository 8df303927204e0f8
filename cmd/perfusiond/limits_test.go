package main

import (
	"context"
	"testing"
	"time"

	"perfusion/server"
)

// TestLimitFlags: the limit flags and variables reach server.Limits, 0
// turns a limit off, and nonsense is a usage error.
func TestLimitFlags(t *testing.T) {
	a, _, _ := testApp(map[string]string{envMaxPrincipalStrs: "7", envCallTimeout: "5s"})
	c, err := a.serveFlags([]string{"--max-connections", "0", "--max-connection-idle", "0"})
	if err != nil {
		t.Fatal(err)
	}
	got := c.limits.limits()
	want := server.Limits{MaxRecvMessageSize: server.DefaultMaxRecvMessageSize, MaxConnections: -1, ConnectionTimeout: server.DefaultConnectionTimeout,
		MaxConnectionIdle: -1, MaxConcurrentStreams: server.DefaultMaxConcurrentStreams, MaxStreamsPerPrincipal: 7, CallTimeout: 5 * time.Second,
		LongCallTimeout: server.DefaultLongCallTimeout}
	if got != want {
		t.Fatalf("limits = %+v, want %+v", got, want)
	}
	for _, args := range [][]string{{"--max-recv-message-bytes", "10"}, {"--max-connections", "-1"}, {"--connection-timeout", "0s"}, {"--call-timeout", "-1s"}} {
		a, _, errb := testApp(map[string]string{envDataDir: t.TempDir()})
		if code := a.run(context.Background(), append([]string{"serve"}, args...)); code != exitUsage {
			t.Errorf("serve %v exited %d, want %d: %s", args, code, exitUsage, errb)
		}
	}
}

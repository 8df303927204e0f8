package main

import (
	"io"
	"strings"
	"testing"
)

// The generator refuses anything beyond this machine, and runs that the
// server's batch limits would reject.
func TestConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "10.1.2.3:7070"}, "not a loopback address"},
		{[]string{"--addr", "perfusion.example.org:7070"}, "not a loopback address"},
		{[]string{"--database-url", "postgres://postgres@db.example.org/test"}, "not on this machine"},
		{[]string{"--database-url", "host=127.0.0.1,10.0.0.9 user=postgres"}, "not on this machine"},
		{[]string{"--cases", "0"}, "--cases"},
		{[]string{"--duration", "2h"}, "--duration"},
		{[]string{"--history", "1.5s"}, "--history"},
		{[]string{"--history", "4h", "--history-batch", "5m"}, "over 10000 samples"},
		{[]string{"--batch-interval", "5m"}, "over 10000 samples"},
		{[]string{"--waveform", "--batch-interval", "90s"}, "waveform batches"},
		{[]string{"--spawn", "--server-pid", "12"}, "--server-pid"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		_, err := parseConfig(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestConfigAccepts(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--addr", "[::1]:7070", "--server-pid", "1"},
		{"--addr", "localhost:7070"},
		{"--spawn", "--database-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
		{"--spawn", "--database-url", "host=/var/run/postgresql user=postgres"},
		{"--max-rate", "--cases", "100", "--duration", "20s", "--waveform", "--history", "4h"},
		{"--history", "4h", "--history-batch", "1m", "--batch-interval", "200ms"},
		{"--history", "10m", "--batch-interval", "250ms"},
	} {
		if _, err := parseConfig(args, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

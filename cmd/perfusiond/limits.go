package main

import (
	"flag"
	"time"

	"perfusion/server"
)

// Environment variables of the resource-limit flags.
const (
	envMaxRecvMessage   = "PERFUSION_MAX_RECV_MESSAGE_BYTES"
	envMaxConnections   = "PERFUSION_MAX_CONNECTIONS"
	envConnTimeout      = "PERFUSION_CONNECTION_TIMEOUT"
	envMaxConnIdle      = "PERFUSION_MAX_CONNECTION_IDLE"
	envMaxConnStreams   = "PERFUSION_MAX_STREAMS_PER_CONNECTION"
	envMaxPrincipalStrs = "PERFUSION_MAX_STREAMS_PER_PRINCIPAL"
	envCallTimeout      = "PERFUSION_CALL_TIMEOUT"
	envLongCallTimeout  = "PERFUSION_LONG_CALL_TIMEOUT"
)

// limitsConfig is the flags' view of server.Limits, where 0 turns a limit
// off (server.Limits uses 0 for its default and a negative value for off).
type limitsConfig struct {
	maxRecv, maxConns, maxConnStreams, maxPrincipalStreams int
	connTimeout, maxIdle, callTimeout, longCallTimeout     time.Duration
}

func limitsFlags(fs *flag.FlagSet, env envFlags) *limitsConfig {
	c := &limitsConfig{}
	fs.IntVar(&c.maxRecv, "max-recv-message-bytes", server.DefaultMaxRecvMessageSize,
		"largest request message accepted; the largest valid sample batch is about 245 KB (env "+envMaxRecvMessage+")")
	fs.IntVar(&c.maxConns, "max-connections", server.DefaultMaxConnections,
		"connections served at once, more wait to be accepted; 0: no limit (env "+envMaxConnections+")")
	fs.DurationVar(&c.connTimeout, "connection-timeout", server.DefaultConnectionTimeout,
		"how long a new connection has for its TLS and HTTP/2 handshakes (env "+envConnTimeout+")")
	fs.DurationVar(&c.maxIdle, "max-connection-idle", server.DefaultMaxConnectionIdle,
		"close a connection without calls for this long; 0: never (env "+envMaxConnIdle+")")
	fs.IntVar(&c.maxConnStreams, "max-streams-per-connection", server.DefaultMaxConcurrentStreams,
		"calls open at once on one connection; 0: no limit (env "+envMaxConnStreams+")")
	fs.IntVar(&c.maxPrincipalStreams, "max-streams-per-principal", server.DefaultMaxStreamsPerPrincipal,
		"streams (StreamSamples, WatchCase, ExportCohort) one caller may hold open; 0: no limit (env "+envMaxPrincipalStrs+")")
	fs.DurationVar(&c.callTimeout, "call-timeout", server.DefaultCallTimeout,
		"server-side deadline of a unary call, body included; 0: none (env "+envCallTimeout+")")
	fs.DurationVar(&c.longCallTimeout, "long-call-timeout", server.DefaultLongCallTimeout,
		"deadline of VerifyRecord, RenderHL7, RenderFHIR, AggregateMetrics and ExportCohort; 0: none (env "+envLongCallTimeout+")")
	for k, v := range map[string]string{"max-recv-message-bytes": envMaxRecvMessage, "max-connections": envMaxConnections,
		"connection-timeout": envConnTimeout, "max-connection-idle": envMaxConnIdle, "max-streams-per-connection": envMaxConnStreams,
		"max-streams-per-principal": envMaxPrincipalStrs, "call-timeout": envCallTimeout, "long-call-timeout": envLongCallTimeout} {
		env[k] = v
	}
	return c
}

// check refuses values that would disable the server or make no sense.
func (c *limitsConfig) check() error {
	switch {
	case c.maxRecv < 4<<10 || c.maxRecv > 64<<20:
		return usageErrorf("--max-recv-message-bytes must be 4096 to 67108864")
	case c.maxConns < 0 || c.maxConnStreams < 0 || c.maxPrincipalStreams < 0:
		return usageErrorf("--max-connections, --max-streams-per-connection and --max-streams-per-principal must not be negative")
	case c.connTimeout <= 0:
		return usageErrorf("--connection-timeout must be positive")
	case c.maxIdle < 0 || c.callTimeout < 0 || c.longCallTimeout < 0:
		return usageErrorf("--max-connection-idle, --call-timeout and --long-call-timeout must not be negative")
	}
	return nil
}

// limits maps the flags to server.Limits: a flag's 0 (off) is the
// server's negative.
func (c *limitsConfig) limits() server.Limits {
	off := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	offDur := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	return server.Limits{
		MaxRecvMessageSize:     c.maxRecv,
		MaxConnections:         off(c.maxConns),
		ConnectionTimeout:      c.connTimeout,
		MaxConnectionIdle:      offDur(c.maxIdle),
		MaxConcurrentStreams:   off(c.maxConnStreams),
		MaxStreamsPerPrincipal: off(c.maxPrincipalStreams),
		CallTimeout:            offDur(c.callTimeout),
		LongCallTimeout:        offDur(c.longCallTimeout),
	}
}

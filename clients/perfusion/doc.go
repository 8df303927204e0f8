// Package perfusion is the Go client library of the perfusion record
// service (perfusiond): typed calls over CaseService, ChartingService and
// RecordService, and a SampleStreamer that carries a device gateway's data
// to the server without ever losing a sample when the network, the server
// or the gateway itself goes down.
//
// # Calls
//
// Dial returns a Client. Its methods take and return the generated
// messages of perfusion/api/perfusion/v1 unchanged, and fail with the
// server's gRPC status unchanged (use status.Code, and FieldViolations for
// the google.rpc.BadRequest detail of InvalidArgument). Calls that are
// safe to repeat — reads, and writes that are idempotent on a client-made
// id (RecordEntry, CorrectEntry, AddAddendum, CreateCase with a case_id)
// — are retried on Unavailable and DeadlineExceeded, with exponential
// back-off and jitter, until their context ends. Other writes are sent
// once.
//
// # Device data
//
// OpenSampleStreamer returns a SampleStreamer for one (case, source). Send
// appends samples to the next batch and writes them to an append-only
// spool on local disk before it returns; a background loop sends cut
// batches over one StreamSamples stream, resends whatever the server has
// not acknowledged after every reconnect, and deletes spool segments once
// every batch in them is acknowledged. A gateway that crashes and calls
// OpenSampleStreamer again on the same spool directory resumes where it
// stopped: the server ends up with every sample exactly once. With
// StreamerOptions.MaxSpoolBytes the spool is bounded: past it, Send fails
// with ErrSpoolFull and takes nothing, so a long outage fills no disk and
// loses nothing silently.
//
// One source has one writer. The server names the batch a refusal is about
// (google.rpc.ErrorInfo SAMPLE_BATCH_REJECTED with its source and
// sequence); that batch goes to the dead-letter file and the rest are
// resent. When a second stream opens the same case and source, the server
// gives the source to the newer stream and ends the older one with
// SOURCE_TAKEN_OVER: a streamer that receives it stops with
// ErrSourceTakenOver (two gateways share a source id), its unsent batches
// kept in the spool. A gateway's own reconnect never sees this, because it
// has already given up the old stream.
//
// # Watching a case
//
// Watch follows a case for a display (ChartingService.WatchCase): trend
// buckets, entries, corrections and voids, close and sign-off, as they
// commit. It keeps the position of the last message it handed on and, when
// the stream breaks, calls again from it after a back-off, so the display
// sees every write exactly once however often the network drops; it returns
// nil once the case is signed and delivered.
//
// # Identity and transport
//
// Every call carries a bearer token (WithToken: a JWT from the hospital's
// identity provider, or in development one printed by `perfusiond token`),
// or the connection a client certificate (WithTLS with Certificates, for
// device gateways). WithTLS sets TLS 1.3 and the server's CA; without it
// the connection is plaintext, which perfusiond accepts on loopback only.
// Credentials builds these options from command-line flags and
// PERFUSION_TOKEN. WithPrincipal (the x-perfusion-principal header) is for
// test builds of perfusiond (-tags devauth) run with --dev-header-auth, and in-process tests.
package perfusion

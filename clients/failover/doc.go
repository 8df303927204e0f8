// Package failover holds the operations drills of the deployment guide
// (docs/deployment.md) as tests, run against the real programs:
//
//   - TestFailoverSynchronous and TestFailoverAsynchronous start a
//     PostgreSQL cluster of three nodes managed by Patroni with etcd, two
//     perfusiond on it, and 100 device streams plus concurrent entries
//     from the client library; they kill the primary's machine (Patroni
//     and PostgreSQL, SIGKILL) and one perfusiond, let Patroni promote a
//     standby, and count every acknowledged batch and entry back. With
//     synchronous replication nothing acknowledged is lost; asynchronous
//     replication shows what it loses.
//   - TestRestoreDrill takes a base backup and archives WAL while a case
//     is charted, restores to a point in time into a new data directory,
//     starts perfusiond on it and verifies every case.
//
// It lives apart from store/postgres because what is tested is the whole
// deployment seen from a client: the HA engine, the server's behaviour
// while no database is writable, and the client library moving between
// servers. There is no package code: only this comment and the tests.
//
// The tests need Patroni, etcd and PostgreSQL's server binaries (Debian:
// patroni, etcd-server, postgresql). Without them they are skipped,
// naming what is missing; in CI (CI set) they fail instead. PostgreSQL
// refuses to run as root, so when the tests run as root they start
// Patroni, PostgreSQL and etcd as the postgres user, in temporary
// directories owned by it.
package failover

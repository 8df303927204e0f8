package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"perfusion/store"
)

// sqlStateErr stands for a driver error that carries a SQLSTATE, as pgx's
// *pgconn.PgError does.
type sqlStateErr string

func (e sqlStateErr) Error() string    { return "database error " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

func TestIsUnavailable(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"sentinel, wrapped", fmt.Errorf("begin: %w", store.ErrUnavailable), true},
		{"connection refused", fmt.Errorf("connect: %w", opErr), true},
		{"refused among joined per-host errors", errors.Join(errors.New("read only connection"), opErr), true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"08006 connection failure", sqlStateErr("08006"), true},
		{"08P01 protocol violation (class 08)", sqlStateErr("08P01"), true},
		{"25006 read-only transaction (a standby)", fmt.Errorf("insert: %w", sqlStateErr("25006")), true},
		{"57P01 admin shutdown", sqlStateErr("57P01"), true},
		{"57P02 crash shutdown", sqlStateErr("57P02"), true},
		{"57P03 cannot connect now", sqlStateErr("57P03"), true},
		{"53300 too many connections", sqlStateErr("53300"), true},
		{"57014 query cancelled is not", sqlStateErr("57014"), false},
		{"23505 unique violation is not", sqlStateErr("23505"), false},
		{"22021 data exception is not", sqlStateErr("22021"), false},
		{"40001 serialization failure is not", sqlStateErr("40001"), false},
		{"deadline is not", context.DeadlineExceeded, false},
		{"cancellation is not", context.Canceled, false},
		{"a plain error is not", errors.New("decode block"), false},
	} {
		if got := store.IsUnavailable(tc.err); got != tc.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

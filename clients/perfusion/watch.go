package perfusion

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// Watch follows a case with WatchCase and calls fn with every message, in
// order, until the case is signed and delivered (the message with final
// set; Watch then returns nil), fn returns an error (returned), ctx ends
// (ctx's error), or the server refuses the watch with a status that is not
// worth retrying (returned unchanged: InvalidArgument, NotFound,
// PermissionDenied…).
//
// When the stream breaks — the network drops, the server restarts or is
// unavailable, or the stream ends without its final message — Watch calls
// again after a back-off with after_position set to the position of the
// last message fn received, so fn sees every committed write exactly once
// across reconnects. Start from req.AfterPosition (0: the whole case).
func (c *Client) Watch(ctx context.Context, req *pb.WatchCaseRequest, fn func(*pb.WatchCaseResponse) error) error {
	req = proto.CloneOf(req)
	for attempt := 0; ; attempt++ {
		progressed, final, err := c.watchOnce(ctx, req, fn)
		var cb callbackError
		switch {
		case final:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &cb):
			return cb.err
		case err != nil && !retryable(err):
			return err
		}
		if progressed {
			attempt = 0 // the link worked: start the back-off over
		}
		c.cfg.log.Debug("perfusion: resuming watch", "position", req.GetAfterPosition(), "attempt", attempt+1)
		// A display must come back within seconds of its server: the
		// wait is capped as a sample stream's is, and gRPC's own
		// connection back-off (grown while the server was down) is reset.
		delay := min(backoffDelay(c.cfg.backoffInitial, c.cfg.backoffMax, attempt), DefaultMaxReconnectDelay)
		if sleepCtx(ctx, delay) != nil {
			return ctx.Err()
		}
		c.conn.ResetConnectBackoff()
	}
}

// callbackError carries an error returned by Watch's fn, which ends the
// watch unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// watchOnce runs one WatchCase call, moving req's position along with each
// message fn accepted. A clean end without the final message (a server
// going away) is reported as Unavailable, to be resumed.
func (c *Client) watchOnce(ctx context.Context, req *pb.WatchCaseRequest, fn func(*pb.WatchCaseResponse) error) (progressed, final bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.charting.WatchCase(ctx, req)
	if err != nil {
		return false, false, err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return progressed, false, status.Error(codes.Unavailable, "perfusion: the server ended the watch before the case was signed")
		}
		if err != nil {
			return progressed, false, err
		}
		if err := fn(m); err != nil {
			return progressed, false, callbackError{err}
		}
		progressed = true
		req.AfterPosition = m.GetPosition()
		if m.GetFinal() {
			return true, true, nil
		}
	}
}

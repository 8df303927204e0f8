package perfusion

import (
	"errors"
	"fmt"
)

// ErrSpoolFull is returned by Send when accepting the samples would grow
// the spool past StreamerOptions.MaxSpoolBytes. Nothing of that Send was
// written; everything accepted before is still spooled and will be sent.
var ErrSpoolFull = errors.New("perfusion: the spool is full; the server has been unreachable too long for the configured spool size")

// size is the bytes the spool's segments hold on disk.
func (sp *spool) size() int64 {
	var n int64
	for _, seg := range sp.segs {
		n += seg.off
	}
	return n
}

// checkQuotaLocked refuses records that would take the spool past its bound.
func (s *SampleStreamer) checkQuotaLocked(recs [][]byte) error {
	if s.opts.MaxSpoolBytes <= 0 {
		return nil
	}
	var need int64
	for _, r := range recs {
		need += int64(frameHeaderLen + len(r))
	}
	if have := s.sp.size(); have+need > s.opts.MaxSpoolBytes {
		s.stats.SpoolFull++
		return fmt.Errorf("%w (%d bytes spooled, %d more needed, bound %d)", ErrSpoolFull, have, need, s.opts.MaxSpoolBytes)
	}
	return nil
}

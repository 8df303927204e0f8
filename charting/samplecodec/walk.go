package samplecodec

import (
	"encoding/binary"
	"fmt"

	"perfusion/charting"
)

// Walker decodes blocks one series at a time into buffers it reuses, for
// readers that fold samples into aggregates (a trend query over a long case
// reads tens of thousands of blocks) and need not own them. A Walker is not
// safe for concurrent use; its zero value is ready.
type Walker struct {
	sc     scratch
	colBuf []int64 // version 2 time columns, one after the other
	colEnd []int   // where each column ends in colBuf
}

// Walk calls fn for each series of block whose channel want accepts (every
// series when want is nil), in order, with the series' channel name and
// samples. Both are valid only until fn returns: the name is a slice of
// block and the samples live in the Walker's buffers (Channel is left
// empty). Walk stops at fn's first error and returns it, and returns an
// error wrapping ErrCorrupt for a damaged block, with the same guarantees
// as DecodeBlock. With want nil, a block Walk accepts decodes with
// DecodeBlock to exactly the series Walk visited; with a want, series it
// refuses may be skipped unchecked where the format allows (verification
// must use DecodeBlock).
func (w *Walker) Walk(block []byte, want func(channel []byte) bool, fn func(channel []byte, s charting.Series) error) error {
	if len(block) == 0 {
		return corrupt("empty block")
	}
	if block[0] == Version2 {
		return w.walkV2(block[1:], want, fn)
	}
	if block[0] != Version1 {
		return corrupt("unknown block version %d", block[0])
	}
	count, k := binary.Uvarint(block[1:])
	if k <= 0 {
		return corrupt("block: bad series count")
	}
	rest := block[1+k:]
	if count > uint64(len(rest))/3 {
		return corrupt("block: %d series cannot fit in %d bytes", count, len(rest))
	}
	for i := range int(count) {
		name, s, r, err := decodeSeries(rest, &w.sc)
		if err != nil {
			return fmt.Errorf("block series %d: %w", i, err)
		}
		rest = r
		if want != nil && !want(name) {
			continue
		}
		if err := fn(name, s); err != nil {
			return err
		}
	}
	if len(rest) != 0 {
		return corrupt("block: %d bytes after the last series", len(rest))
	}
	return nil
}

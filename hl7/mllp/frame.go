package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MLLP framing bytes.
const (
	StartBlock     byte = 0x0B // vertical tab: starts a frame
	EndBlock       byte = 0x1C // file separator: ends the message
	CarriageReturn byte = 0x0D // follows EndBlock
)

// DefaultMaxFrameSize bounds a frame when no limit is configured: large
// enough for an MDM with an embedded PDF, small enough that a peer cannot
// make the reader allocate without bound.
const DefaultMaxFrameSize = 16 << 20

// Framing errors. After either, the stream cannot be trusted: close the
// connection.
var (
	ErrFrameTooLarge = errors.New("mllp: frame exceeds the maximum size")
	ErrMalformed     = errors.New("mllp: malformed frame")
)

// WriteFrame writes msg as one MLLP frame in a single Write. A message that
// itself contains a framing byte is refused: it would end the frame early
// (hl7/v2 escapes both, so its output never does).
func WriteFrame(w io.Writer, msg []byte) error {
	if bytes.IndexByte(msg, StartBlock) >= 0 || bytes.IndexByte(msg, EndBlock) >= 0 {
		return errors.New("mllp: message contains an MLLP framing byte")
	}
	b := make([]byte, 0, len(msg)+3)
	b = append(b, StartBlock)
	b = append(b, msg...)
	b = append(b, EndBlock, CarriageReturn)
	_, err := w.Write(b)
	return err
}

// Reader reads MLLP frames from a stream.
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader that accepts frames of at most maxSize bytes
// of message (DefaultMaxFrameSize when maxSize <= 0).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxFrameSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxSize}
}

// ReadFrame returns the next message, without its framing bytes, in a new
// slice the caller owns. Line breaks between frames are skipped (some
// senders add them); any other byte outside a frame is ErrMalformed. It
// returns io.EOF at a clean end of stream between frames,
// io.ErrUnexpectedEOF inside one, and ErrFrameTooLarge as soon as a frame
// passes the limit, without reading the rest of it.
func (r *Reader) ReadFrame() ([]byte, error) {
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return nil, err // io.EOF between frames is a clean end
		}
		if c == StartBlock {
			break
		}
		if c != '\r' && c != '\n' {
			return nil, ErrMalformed
		}
	}
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice(EndBlock)
		if len(r.buf)+len(chunk) > r.max+1 { // +1: the EndBlock itself
			r.buf = nil // do not keep a large buffer for a bad peer
			return nil, ErrFrameTooLarge
		}
		r.buf = append(r.buf, chunk...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	msg := r.buf[:len(r.buf)-1]
	if bytes.IndexByte(msg, StartBlock) >= 0 {
		return nil, ErrMalformed // a new frame began before this one ended
	}
	c, err := r.br.ReadByte()
	switch {
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	case c != CarriageReturn:
		return nil, ErrMalformed
	}
	out := make([]byte, len(msg))
	copy(out, msg)
	if cap(r.buf) > 1<<20 {
		r.buf = nil // keep only a modest buffer between frames
	}
	return out, nil
}

package mllp

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns the data in pieces whose sizes come from the fuzzer,
// so frames arrive split at every possible point.
type chunkReader struct {
	data  []byte
	sizes []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = int(r.sizes[0]) + 1
		r.sizes = r.sizes[1:]
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzReader feeds arbitrary bytes, in arbitrary pieces, to the frame
// reader. It must not panic, must stop at the first error, must never
// return a frame over the limit or one holding a framing byte, and must
// never buffer much more than the limit.
func FuzzReader(f *testing.F) {
	f.Add([]byte(frame("MSH|^~\\&|A\r")+frame("b")), []byte{0, 3, 7})
	f.Add([]byte("\x0b\x0b\x1c\r\x1c\r"), []byte{1})
	f.Add([]byte("\r\n\x0babc\x1c\rjunk"), []byte{})
	f.Add(bytes.Repeat([]byte{0x0b, 'a'}, 100), []byte{255})
	const limit = 64
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		r := NewReader(&chunkReader{data: data, sizes: sizes}, limit)
		for range len(data) + 1 {
			msg, err := r.ReadFrame()
			if err != nil {
				if cap(r.buf) > limit+(32<<10)+64 {
					t.Fatalf("buffered %d bytes for a %d-byte limit", cap(r.buf), limit)
				}
				return
			}
			if len(msg) > limit || bytes.IndexByte(msg, StartBlock) >= 0 || bytes.IndexByte(msg, EndBlock) >= 0 {
				t.Fatalf("bad frame %q", msg)
			}
		}
		t.Fatal("reader returned more frames than there are bytes")
	})
}

// FuzzFrameRoundTrip checks that whatever WriteFrame accepts, the reader
// returns unchanged however the stream is split.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("MSH|^~\\&|A"), []byte("second"), []byte{2, 5})
	f.Fuzz(func(t *testing.T, a, b, sizes []byte) {
		var buf bytes.Buffer
		var want [][]byte
		for _, m := range [][]byte{a, b, a} {
			if err := WriteFrame(&buf, m); err == nil {
				want = append(want, m)
			}
		}
		r := NewReader(&chunkReader{data: buf.Bytes(), sizes: sizes}, 1<<16)
		for i, w := range want {
			got, err := r.ReadFrame()
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("frame %d: %q, %v; want %q", i, got, err, w)
			}
		}
		if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the frames: %v", err)
		}
	})
}

package mllp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func frame(s string) string { return "\x0b" + s + "\x1c\r" }

func TestReadFrames(t *testing.T) {
	msgs := []string{"MSH|^~\\&|A\rPID|1\r", "MSH|^~\\&|B\r", strings.Repeat("x", 100_000), ""}
	var stream bytes.Buffer
	for i, m := range msgs {
		if err := WriteFrame(&stream, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			stream.WriteString("\r\n") // tolerated between frames
		}
	}
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream.Bytes()),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream.Bytes())),
		"half":     iotest.HalfReader(bytes.NewReader(stream.Bytes())),
	} {
		fr := NewReader(r, 0)
		for i, want := range msgs {
			got, err := fr.ReadFrame()
			if err != nil || string(got) != want {
				t.Fatalf("%s: frame %d: %v (len %d, want %d)", name, i, err, len(got), len(want))
			}
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Errorf("%s: after the last frame: %v, want io.EOF", name, err)
		}
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"garbage before", "xyz" + frame("a"), ErrMalformed},
		{"no CR after end", "\x0babc\x1cX", ErrMalformed},
		{"start inside", "\x0bab\x0bc\x1c\r", ErrMalformed},
		{"EOF inside", "\x0babc", io.ErrUnexpectedEOF},
		{"EOF before CR", "\x0babc\x1c", io.ErrUnexpectedEOF},
		{"too large", frame(strings.Repeat("a", 11)), ErrFrameTooLarge},
		{"too large, never ends", "\x0b" + strings.Repeat("a", 1<<20), ErrFrameTooLarge},
	} {
		_, err := NewReader(iotest.HalfReader(strings.NewReader(tc.in)), 10).ReadFrame()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	got, err := NewReader(strings.NewReader(frame(strings.Repeat("a", 10))), 10).ReadFrame()
	if err != nil || len(got) != 10 {
		t.Errorf("frame at the limit: %v", err)
	}
}

func TestWriteFrameRefusesFramingBytes(t *testing.T) {
	for _, m := range []string{"a\x0bb", "a\x1cb"} {
		if err := WriteFrame(io.Discard, []byte(m)); err == nil {
			t.Errorf("%q framed", m)
		}
	}
}

package archive

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// spool keeps an archive's sample-batch lines in a temporary file between
// verifying them and storing them, so Import's memory does not grow with the
// case's device data and a retried transaction can read them again.
type spool struct {
	f    *os.File
	name string // "" once unlinked
	w    *bufio.Writer
	h    hash.Hash
	n    int64
	sum  []byte // SHA-256 of the lines, set by finish
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "perfusion-archive-*.spool") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("spool sample batches: %w", err)
	}
	s := &spool{f: f, name: f.Name(), w: bufio.NewWriterSize(f, 256<<10), h: sha256.New()}
	// Unlinked at once where the platform allows it (not Windows), so the
	// device data leaves no file behind even if the process dies.
	if os.Remove(s.name) == nil {
		s.name = ""
	}
	return s, nil
}

// add appends one line.
func (s *spool) add(line []byte) error {
	s.h.Write(line)
	s.h.Write([]byte{'\n'})
	s.n++
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("spool sample batches: %w", err)
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("spool sample batches: %w", err)
	}
	return nil
}

// finish flushes the spool and fixes its checksum.
func (s *spool) finish() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool sample batches: %w", err)
	}
	s.sum = s.h.Sum(nil)
	return nil
}

// each calls fn with every spooled line in order, decoded, and fails if
// the spool no longer holds exactly what was verified.
func (s *spool) each(fn func(samplesLine) error) error {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read spooled sample batches: %w", err)
	}
	sc := bufio.NewScanner(s.f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	h := sha256.New()
	var n int64
	for sc.Scan() {
		line := sc.Bytes()
		h.Write(line)
		h.Write([]byte{'\n'})
		n++
		l, err := decodeSamples(line)
		if err != nil {
			return fmt.Errorf("read spooled sample batches: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read spooled sample batches: %w", err)
	}
	if n != s.n || string(h.Sum(nil)) != string(s.sum) {
		return errors.New("the spooled sample batches changed after they were verified")
	}
	return nil
}

func (s *spool) close() {
	s.f.Close()
	if s.name != "" {
		os.Remove(s.name)
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line bar on stderr for operations that take long
// enough for a person to wonder whether anything is happening. It redraws at
// most every minRedraw so a fast loop does not flood a slow terminal, and it
// never writes to stdout, so piping the data somewhere stays clean.
type progress struct {
	w         io.Writer
	label     string
	total     int64
	done      int64
	started   time.Time
	lastDraw  time.Time
	minRedraw time.Duration
	now       func() time.Time
}

const barWidth = 30

// newProgress returns nil (a no-op bar) when mode says not to draw: "never",
// or "auto" with stderr not a terminal.
func newProgress(w io.Writer, mode, label string, total int64) *progress {
	switch mode {
	case "never":
		return nil
	case "auto":
		if !isTerminal(w) {
			return nil
		}
	}
	return &progress{w: w, label: label, total: total, started: time.Now(), minRedraw: 100 * time.Millisecond, now: time.Now}
}

// isTerminal reports whether w is a character device (a terminal), without
// a dependency: a file or pipe is not one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Add records n more units done and redraws if it is time to.
func (p *progress) Add(n int64) {
	if p == nil {
		return
	}
	p.done += n
	if now := p.now(); now.Sub(p.lastDraw) >= p.minRedraw {
		p.lastDraw = now
		p.draw()
	}
}

// Finish draws the final state and ends the line.
func (p *progress) Finish() {
	if p == nil {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
}

func (p *progress) draw() {
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(p.done)/float64(p.total), 1)
	}
	filled := int(frac * barWidth)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	elapsed := p.now().Sub(p.started)
	eta := ""
	if frac > 0 && frac < 1 {
		eta = fmt.Sprintf(", %s left", (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second))
	}
	fmt.Fprintf(p.w, "\r%s [%s] %3.0f%% %d/%d%s ", p.label, bar, frac*100, p.done, p.total, eta)
}

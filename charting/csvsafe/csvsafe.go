// Package csvsafe writes CSV that a spreadsheet opens without running any
// cell as a formula.
//
// Extracts and listings go to quality reviewers, who open them in Excel or
// LibreOffice. A text cell that begins with =, +, -, @, a tab or a carriage
// return is evaluated there as a formula ("CSV injection"), and some of our
// text comes from people: a room, a staff ID, a gateway's source ID. Such a
// cell is written with a leading apostrophe, as OWASP advises, which the
// spreadsheet shows as text. Numbers are never touched: "-1.5" stays a
// number a reviewer can sum.
package csvsafe

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

// Cell returns s as it is safe to write: unchanged unless it is text that a
// spreadsheet would evaluate.
func Cell(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil || s == "-" || s == "+" {
		return s // a number, or a lone sign (a "no value" placeholder)
	}
	return "'" + s
}

// Writer is a csv.Writer that passes every cell through Cell.
type Writer struct {
	w *csv.Writer
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: csv.NewWriter(w)} }

// Write writes one record.
func (w *Writer) Write(record []string) error {
	safe := make([]string, len(record))
	for i, c := range record {
		safe[i] = Cell(c)
	}
	return w.w.Write(safe)
}

// WriteAll writes records and flushes.
func (w *Writer) WriteAll(records [][]string) error {
	for _, r := range records {
		if err := w.Write(r); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}

// Flush writes any buffered data.
func (w *Writer) Flush() { w.w.Flush() }

// Error reports an error from a previous Write or Flush.
func (w *Writer) Error() error { return w.w.Error() }

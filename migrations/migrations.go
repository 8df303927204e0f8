// Package migrations holds the versioned SQL schema of each backend,
// embedded in the binary so a server can migrate its own database at start
// and by `perfusiond migrate`. Files are named NNN_name.up.sql; each runs in
// its own transaction that also records its version. Applied migrations
// never change: a schema change is a new file.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Migration is one versioned schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var fileName = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.up\.sql$`)

// For returns the migrations of a dialect ("postgres" or "sqlite") in
// version order. Versions must run 1, 2, 3… without gaps.
func For(dialect string) ([]Migration, error) {
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", dialect, err)
	}
	return parse(sub)
}

func parse(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNN_name.up.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration versions must run 1, 2, 3…: found %d at position %d", m.Version, i+1)
		}
	}
	return out, nil
}

// Latest returns the highest version of a dialect's migrations.
func Latest(dialect string) (int, error) {
	ms, err := For(dialect)
	if err != nil {
		return 0, err
	}
	return len(ms), nil
}

// Empty reports whether the step has nothing to run in its dialect (only
// comments): it exists so every dialect shares one numbering, and is
// recorded without running anything.
func (m Migration) Empty() bool {
	for _, line := range strings.Split(m.SQL, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
			return false
		}
	}
	return true
}

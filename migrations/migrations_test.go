package migrations

import (
	"maps"
	"slices"
	"testing"
)

// TestDialectsShareNumbering: every step has the same number and name in
// every dialect (a step one dialect has nothing for is an empty file
// there), so "version 11" means one thing whatever the store.
func TestDialectsShareNumbering(t *testing.T) {
	pg, err := For("postgres")
	if err != nil {
		t.Fatal(err)
	}
	lite, err := For("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) != len(lite) {
		t.Fatalf("postgres has %d steps, sqlite %d", len(pg), len(lite))
	}
	for i := range pg {
		if pg[i].Version != lite[i].Version || pg[i].Name != lite[i].Name {
			t.Errorf("step %d: postgres %03d_%s, sqlite %03d_%s", i+1, pg[i].Version, pg[i].Name, lite[i].Version, lite[i].Name)
		}
		if pg[i].Empty() && lite[i].Empty() {
			t.Errorf("step %03d_%s does nothing in any dialect", pg[i].Version, pg[i].Name)
		}
	}
}

// TestLegacyNumbering: each dialect's old numbering names steps of the
// shared one, in the same order, and a database recorded under it is
// renumbered by name — and only such a database.
func TestLegacyNumbering(t *testing.T) {
	for dialect, legacy := range Legacy {
		ms, err := For(dialect)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]int{}
		for _, m := range ms {
			byName[m.Name] = m.Version
		}
		last := 0
		for _, name := range legacy {
			v, ok := byName[name]
			if !ok || v <= last {
				t.Fatalf("%s: legacy step %q is not in the shared numbering, in order", dialect, name)
			}
			last = v
		}
		old := map[int]string{}
		for i, name := range legacy {
			old[i+1] = name
		}
		moves := legacyMoves(dialect, old, ms)
		renumbered := map[int]string{}
		for v, name := range old {
			if to, ok := moves[v]; ok {
				v = to
			}
			renumbered[v] = name
		}
		for v, name := range renumbered {
			if ms[v-1].Name != name {
				t.Errorf("%s: %q renumbered to %d, which is %q", dialect, name, v, ms[v-1].Name)
			}
		}
		if err := checkRecorded(renumbered, ms); err != nil {
			t.Errorf("%s: after renumbering: %v", dialect, err)
		}
		// A database already under the shared numbering is left alone.
		shared := map[int]string{}
		for _, m := range ms {
			shared[m.Version] = m.Name
		}
		if m := legacyMoves(dialect, shared, ms); m != nil {
			t.Errorf("%s: a database under the shared numbering would be renumbered: %v", dialect, m)
		}
		// So is one with a step the legacy numbering never had.
		foreign := maps.Clone(old)
		foreign[len(old)+1] = "from_the_future"
		if m := legacyMoves(dialect, foreign, ms); m != nil {
			t.Errorf("%s: a foreign database would be renumbered: %v", dialect, m)
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(Legacy)), []string{"postgres", "sqlite"}) {
		t.Errorf("legacy numberings for %v", slices.Sorted(maps.Keys(Legacy)))
	}
}

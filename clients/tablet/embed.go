// Package tablet holds the charting tablet's built files (dist/), which
// perfusiond serves to browsers, so a Go build alone runs the whole
// product with no Node.js installed. The sources beside them build dist/
// (see README.md there); CI rebuilds and fails when dist/ is stale.
package tablet

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Files is the built tablet, index.html at its root.
var Files = mustSub(dist, "dist")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dir is a constant embedded above
	}
	return sub
}

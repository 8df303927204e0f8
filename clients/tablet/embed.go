// Package tablet holds the charting tablet, the web app the perfusionist
// charts on during a case, built into dist/ (TypeScript sources in src/,
// built with `npm run build`; see README.md) and embedded here so that
// perfusiond serves it with no Node installed. The built files are
// committed; CI rebuilds them (check-fresh.sh) and fails when they are
// stale.
package tablet

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Files is the built app: index.html, app.js, app.css and sw.js at its
// root, as perfusiond serves them at /.
var Files fs.FS = mustSub(dist, "dist")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dist is embedded at build time: a missing directory fails the build first
	}
	return s
}

package tablet

import (
	"io/fs"
	"strings"
	"testing"
)

// TestFilesHoldTheApp: the embedded build has the page and its assets, and
// the page loads the bundle it ships.
func TestFilesHoldTheApp(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "app.css", "sw.js"} {
		b, err := fs.ReadFile(Files, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
	page, err := fs.ReadFile(Files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`src="/app.js?v=`, `href="/app.css?v=`, `id="app"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
}

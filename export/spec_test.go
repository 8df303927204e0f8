package export_test

import (
	"os"
	"strings"
	"testing"

	v2 "perfusion/hl7/v2"
)

// TestInterfaceSpecListsEveryLocalCode keeps the published code system in
// step with the codes the messages use.
func TestInterfaceSpecListsEveryLocalCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/interface-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v2.LocalCodes(nil) {
		if !strings.Contains(string(doc), "| `"+c.Code+"` |") {
			t.Errorf("docs/interface-spec.md does not list local code %s", c.Code)
		}
	}
}

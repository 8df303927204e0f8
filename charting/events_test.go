package charting_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// TestEventTypesMatchAPIAndDictionary: the event identifiers hashed into
// the record are the same set in the code (charting.EventTypes), in the
// API (every EventType enum value but UNSPECIFIED, by name) and in the
// data dictionary's table of identifiers (docs/domain.md).
func TestEventTypesMatchAPIAndDictionary(t *testing.T) {
	code := slices.Sorted(slices.Values(charting.EventTypes))
	if len(slices.Compact(slices.Clone(code))) != len(code) {
		t.Fatalf("EventTypes repeats an identifier: %v", code)
	}
	var api []string
	for v, name := range pb.EventType_name {
		if v != 0 {
			api = append(api, strings.ToLower(strings.TrimPrefix(name, "EVENT_TYPE_")))
		}
	}
	slices.Sort(api)
	if !slices.Equal(code, api) {
		t.Errorf("charting.EventTypes and the API's EventType differ:\ncode %v\napi  %v", code, api)
	}
	doc, err := os.ReadFile("../docs/domain.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	start := strings.Index(section, "## Event identifiers")
	if start < 0 {
		t.Fatal("docs/domain.md has no \"Event identifiers\" section")
	}
	section = section[start:]
	if end := strings.Index(section[2:], "\n## "); end >= 0 {
		section = section[:end+2]
	}
	var dict []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		dict = append(dict, m[1])
	}
	slices.Sort(dict)
	if !slices.Equal(code, dict) {
		t.Errorf("charting.EventTypes and docs/domain.md's identifiers differ:\ncode %v\ndoc  %v", code, dict)
	}
}

package main

import (
	"sort"

	"perfusion/charting"
)

// analyteKeys and channelKeys come from the server's own catalogues (the
// charting package, linked in), for help and completion. The server still
// decides: a newer server may know more.
func analyteKeys() []string {
	var keys []string
	for k := range charting.Analytes() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func channelKeys() []string {
	var keys []string
	for _, c := range charting.DefaultCatalogue().Channels() {
		keys = append(keys, c.Key)
	}
	sort.Strings(keys)
	return keys
}

// analyteUnit is the catalogue unit of an analyte, "" when unknown.
func analyteUnit(key string) string { return charting.Analytes()[key].Unit }

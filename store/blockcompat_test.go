package store

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// TestSameContentAcrossVersions checks that a batch resent after the codec
// changed is recognised as the batch stored in version 1, and that a
// different batch is not.
func TestSameContentAcrossVersions(t *testing.T) {
	cat := charting.DefaultCatalogue()
	b := &charting.SampleBatch{CaseID: uuid.New(), SourceID: "hlm-1", Seq: 7, Actor: "gw", RecordedAt: time.Now(),
		Series: []charting.Series{
			{Channel: "pump_flow", TimesMs: []int64{1000, 2000}, Values: []float64{4.5, 4.51}},
			{Channel: "map", TimesMs: []int64{1000, 2000}, Values: []float64{65, 66}, Invalid: []bool{false, true}},
		}}
	p := prepare(b, cat)
	if p.row.Block[0] != samplecodec.Version2 {
		t.Fatalf("new blocks are version %d", p.row.Block[0])
	}
	v1 := samplecodec.EncodeBlockV1(b.Series, cat.Resolution)
	if !sameContent(p.row.Block, &p) || !sameContent(v1, &p) {
		t.Fatal("the same batch in version 1 or 2 is not recognised")
	}
	b.Series[1].Values[0] = 64
	other := samplecodec.EncodeBlockV1(b.Series, cat.Resolution)
	if sameContent(other, &p) {
		t.Fatal("a version 1 block with a different value counts as the same content")
	}
	if sameContent(samplecodec.EncodeBlock(b.Series, cat.Resolution), &p) {
		t.Fatal("a version 2 block with a different value counts as the same content")
	}
	if sameContent([]byte{1, 0xff}, &p) {
		t.Fatal("a corrupt stored block counts as the same content")
	}
}

package store

import (
	"bytes"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// sameContent reports whether a stored block holds exactly the batch p, so
// that a resend is a duplicate rather than a conflict. Blocks written by the
// same codec version are compared byte for byte (the encoder is
// deterministic). A block stored by an earlier version (a batch stored before
// an upgrade, resent after it) is decoded and compared by the content digest
// its ledger link covers, since the same samples now encode differently.
func sameContent(stored []byte, p *preparedBatch) bool {
	if bytes.Equal(stored, p.row.Block) {
		return true
	}
	if len(stored) == 0 || len(p.row.Block) == 0 || stored[0] == p.row.Block[0] {
		return false
	}
	series, err := samplecodec.DecodeBlock(stored)
	if err != nil {
		return false
	}
	return charting.SampleDigest(p.row.SourceID, p.row.Seq, series) == p.digest
}

package charting

// Series is the samples of one channel from one source, as parallel slices.
// Columns rather than a slice of points keep batches compact in memory and
// let the block codec work column by column.
type Series struct {
	// Channel is the catalogue key of the channel.
	Channel string
	// TimesMs is the device time of each sample in milliseconds since the
	// Unix epoch, strictly increasing within a batch.
	TimesMs []int64
	// Values holds the value of each sample in the channel's unit. At an
	// invalid index the value is 0 and carries no meaning.
	Values []float64
	// Invalid marks samples the device reported as invalid. It is either nil
	// (no invalid sample) or as long as TimesMs.
	Invalid []bool
}

// Len returns the number of samples.
func (s Series) Len() int { return len(s.TimesMs) }

// IsInvalid reports whether sample i was reported invalid by the device.
func (s Series) IsInvalid(i int) bool { return s.Invalid != nil && s.Invalid[i] }

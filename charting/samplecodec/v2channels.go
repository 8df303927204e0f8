package samplecodec

// v2Channels is the channel table of block format version 2: a series
// whose channel is entry i is stored with the reference i+1 instead of its
// name, which for 1-s batches of 40 channels is most of what a block held.
//
// It is part of the stored format. Entries are never removed, reordered or
// renamed, only appended (a renamed channel is a new entry): a block written
// today must name the same channels in decades. Channels not in the table
// are stored by name, so the table only decides compactness, never what can
// be stored. TestV2ChannelTableCoversCatalogue fails when the default
// catalogue gains a channel the table lacks, as a reminder to append it.
var v2Channels = [...]string{
	"pump_flow",
	"pump_speed",
	"cardioplegia_flow",
	"cardioplegia_pressure",
	"arterial_line_pressure",
	"venous_line_pressure",
	"reservoir_level",
	"sweep_flow",
	"sweep_o2_flow",
	"sweep_air_flow",
	"sweep_co2_flow",
	"fio2",
	"volatile_agent",
	"temp_arterial_outlet",
	"temp_venous_inlet",
	"temp_nasopharyngeal",
	"temp_bladder",
	"temp_rectal",
	"temp_cardioplegia",
	"temp_heater_cooler_water",
	"map",
	"sbp",
	"dbp",
	"cvp",
	"pap",
	"heart_rate",
	"spo2",
	"nirs_left",
	"nirs_right",
	"nirs_site3",
	"nirs_site4",
	"inline_ph",
	"inline_pco2",
	"inline_po2",
	"inline_k",
	"inline_hco3",
	"inline_be",
	"inline_sao2",
	"inline_svo2",
	"inline_hct",
	"inline_hb",
	"urine_output",
}

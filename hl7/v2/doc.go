// Package v2 reads and writes HL7 version 2 messages for the perfusion
// record: a small message model with escaping, a strict parser, the ORU^R01
// case summary sent to an EHR when a case is signed, the IHE PCD-01 device
// observation report, the MDM^T02/T10 carrying the rendered record (PDF)
// as a document, and ACK messages.
//
// Messages are written in HL7 v2.6 with the standard delimiters |^~\&,
// segments ending in CR, and UTF-8 text (MSH-18 says so whenever a message
// is not plain ASCII). What every field holds, and the local "99PERF" codes
// used where no standard code exists, is fixed by this package and listed by
// LocalCodes so that the published interface specification is generated from
// the same table the code uses.
//
// Nothing here logs, and no error text repeats message content: messages
// carry patient identifiers, and errors end up in logs.
package v2

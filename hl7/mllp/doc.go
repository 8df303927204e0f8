// Package mllp carries HL7 v2 messages over TCP with the Minimal Lower
// Layer Protocol: each message is framed as 0x0B, the message, 0x1C 0x0D,
// and answered by an acknowledgement in the same framing.
//
// Reader reads frames with a size limit and survives partial reads. Sender
// delivers one message at a time over one kept connection and interprets
// the ACK: accepted (AA/CA) is done; a content error (AE/CE) is returned at
// once, because resending the same message cannot succeed; a rejection
// (AR/CR), a timeout or a dropped connection is retried with exponential
// back-off and jitter, reconnecting as needed. Receivers deduplicate by
// MSH-10, which is why a retry resends the identical bytes. Server accepts
// frames and answers with whatever its Handler returns; tests use it as the
// receiving end.
//
// Nothing here logs or returns message content: errors name what failed,
// never what the message said.
package mllp

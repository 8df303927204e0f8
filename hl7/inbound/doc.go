// Package inbound receives what the EHR sends over HL7 v2: ADT (patients
// and visits) and SIU (the operating-room schedule), over MLLP from the
// hospital's interface engine, so that nobody re-types a patient.
//
// A Listener accepts MLLP connections (plain TCP or TLS, with client
// certificates when configured) from the senders of an Allowlist only, and
// hands each message, one at a time per connection, to a Handler. The
// Handler answers in HL7 original mode:
//
//   - AA: the message was processed and what it changed is stored; an ERR
//     segment with severity W says what the record's rules kept out (a
//     case that has started charting keeps its body measures, its room and
//     its start);
//   - AE: a content error (a required field missing, a value that is not a
//     date, an unsupported trigger, a cancellation of a case that is being
//     charted) with an ERR segment saying what and where, never the value;
//     resending the same message gives the same answer;
//   - AR: the message could not be processed now (the database is down, the
//     server is stopping); the sender retries.
//
// Every message that parsed as HL7 is kept in the inbound journal (package
// store) with its ACK and what it changed; a resend (the sender's MSH-10
// again) is answered from there with the ACK first sent and changes
// nothing. Input that is not HL7, a frame over the size limit or a
// truncated frame closes the connection, and nothing of it is stored.
//
// What each trigger does to the record is in docs/interface-spec.md
// ("Inbound"): ADT A01/A04/A05/A08/A28/A31 update the patient (the patient
// index, and the cases that name the patient or its visit), A40/A34/A47
// merge identifiers, A11/A13 are noted; SIU S12 plans a case, S13/S14
// update it, S15/S17 cancel it. Changes go through the record's own writes
// (store.CreateCase, UpdateCaseDetails, ReconcileIdentity), each an
// append-only ledger link whose actor is "interface:<sender>": nothing
// signed changes, and a case that has started charting gets identity links
// and details versions with a reason, never a rewrite.
//
// Patient data stays in the database: logs and error texts name fields,
// segments, case ids and control ids, never values.
package inbound

package perfusion

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// A spool file is a sequence of frames:
//
//	u32 little-endian payload length | u32 little-endian CRC-32C | payload
//
// The CRC (Castagnoli) covers the four length bytes and the payload, so a
// torn or bit-flipped length is caught as surely as a torn payload. A file
// is read frame by frame up to the first frame that is short or fails its
// CRC; everything from there on is a torn tail, which recovery truncates.

const (
	frameHeaderLen = 8
	// maxPayload bounds one record. The largest record is a batch's worth
	// of samples (at most 10,000, about 250 KB) plus a status; anything
	// larger is corruption, and refusing it keeps a damaged length from
	// asking for gigabytes.
	maxPayload = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends payload, framed, to dst.
func appendFrame(dst, payload []byte) []byte {
	var h [frameHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, h[0:4])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// errTornFrame describes why reading stopped before the end of the data.
var errTornFrame = errors.New("torn or corrupt frame")

// readFrames returns the payloads of the intact frames at the start of
// data, and good, the length of that intact prefix. err is nil when every
// byte belongs to an intact frame; otherwise it says what is wrong at
// offset good. Payloads alias data.
func readFrames(data []byte) (payloads [][]byte, good int, err error) {
	for off := 0; off < len(data); {
		rest := data[off:]
		if len(rest) < frameHeaderLen {
			return payloads, off, fmt.Errorf("%w: %d header bytes at offset %d", errTornFrame, len(rest), off)
		}
		n := binary.LittleEndian.Uint32(rest[0:4])
		if n > maxPayload {
			return payloads, off, fmt.Errorf("%w: length %d at offset %d", errTornFrame, n, off)
		}
		if uint64(len(rest)-frameHeaderLen) < uint64(n) {
			return payloads, off, fmt.Errorf("%w: %d of %d payload bytes at offset %d", errTornFrame, len(rest)-frameHeaderLen, n, off)
		}
		payload := rest[frameHeaderLen : frameHeaderLen+int(n)]
		crc := crc32.Update(0, castagnoli, rest[0:4])
		crc = crc32.Update(crc, castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(rest[4:8]) {
			return payloads, off, fmt.Errorf("%w: CRC mismatch at offset %d", errTornFrame, off)
		}
		payloads = append(payloads, payload)
		off += frameHeaderLen + int(n)
	}
	return payloads, len(data), nil
}

// Record kinds: the first byte of a payload.
const (
	kindHeader  = 'H' // first record of every segment
	kindSamples = 'S' // samples appended to one batch
	kindBase    = 'B' // the sequence offset, once the server was asked
	kindDead    = 'D' // a batch the server rejected (dead-letter file)
	kindAck     = 'A' // batches the server acknowledged
)

const spoolVersion = 1

// maxSequence bounds every sequence number and offset read from a spool,
// so sums of them cannot overflow; a real spool stays far below it.
const maxSequence = 1 << 60

// header opens every segment: whose data it holds and where numbering
// stands.
type header struct {
	caseID, sourceID string
	// nextLocal is the first local sequence not used when the segment was
	// made.
	nextLocal int64
	// offset is added to a local sequence to get the sequence sent to the
	// server; verified says whether it is known yet (see SampleStreamer).
	offset   int64
	verified bool
}

// samplesRec appends series to batch local.
type samplesRec struct {
	local  int64
	series []*pb.SampleSeries
}

// ackRec says batches lo to hi (inclusive) are acknowledged. It is
// written without a sync: if a crash loses it, those batches are resent
// and acknowledged again as duplicates.
type ackRec struct{ lo, hi int64 }

// deadRec is a batch the server rejected.
type deadRec struct {
	caseID      string
	local, wire int64
	at          time.Time
	status      []byte // google.rpc.Status, serialized
	batch       []byte // perfusion.v1.SampleBatch as sent, serialized
}

func encodeHeader(h header) []byte {
	b := []byte{kindHeader, spoolVersion}
	b = appendString(b, h.caseID)
	b = appendString(b, h.sourceID)
	b = binary.AppendVarint(b, h.nextLocal)
	b = binary.AppendVarint(b, h.offset)
	if h.verified {
		return append(b, 1)
	}
	return append(b, 0)
}

func encodeSamples(r samplesRec) ([]byte, error) {
	b := []byte{kindSamples}
	b = binary.AppendVarint(b, r.local)
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, &pb.SampleBatch{Series: r.series})
}

func encodeBase(offset int64) []byte {
	return binary.AppendVarint([]byte{kindBase}, offset)
}

func encodeAck(r ackRec) []byte {
	b := binary.AppendVarint([]byte{kindAck}, r.lo)
	return binary.AppendVarint(b, r.hi)
}

func encodeDead(r deadRec) []byte {
	b := []byte{kindDead}
	b = appendString(b, r.caseID)
	b = binary.AppendVarint(b, r.local)
	b = binary.AppendVarint(b, r.wire)
	b = binary.AppendVarint(b, r.at.UnixNano())
	b = appendBytes(b, r.status)
	return appendBytes(b, r.batch)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// errBadRecord marks a record whose frame is intact but whose content
// cannot be decoded: not a torn write but a bug or a foreign file.
var errBadRecord = errors.New("undecodable spool record")

// decoder reads the fields of one payload; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadRecord, what)
	}
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.fail(what)
		return nil
	}
	p := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return p
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// decodeRecord decodes one payload into a header, samplesRec, int64 (base
// offset), ackRec or deadRec.
func decodeRecord(p []byte) (any, error) {
	d := &decoder{b: p}
	switch kind := d.byte1("kind"); kind {
	case kindHeader:
		if v := d.byte1("version"); d.err == nil && v != spoolVersion {
			return nil, fmt.Errorf("%w: spool version %d, this library reads %d", errBadRecord, v, spoolVersion)
		}
		h := header{caseID: string(d.bytes("case id")), sourceID: string(d.bytes("source id"))}
		h.nextLocal = d.varint("next sequence")
		h.offset = d.varint("offset")
		h.verified = d.byte1("verified") == 1
		if d.err == nil && (h.nextLocal < 1 || h.nextLocal > maxSequence || h.offset < 0 || h.offset > maxSequence) {
			d.fail("header numbers out of range")
		}
		return h, d.end()
	case kindSamples:
		r := samplesRec{local: d.varint("sequence")}
		if d.err != nil {
			return nil, d.err
		}
		if r.local < 1 || r.local > maxSequence {
			return nil, fmt.Errorf("%w: sequence %d", errBadRecord, r.local)
		}
		var b pb.SampleBatch
		if err := proto.Unmarshal(d.b, &b); err != nil {
			return nil, fmt.Errorf("%w: samples: %v", errBadRecord, err)
		}
		r.series = b.Series
		return r, nil
	case kindBase:
		off := d.varint("offset")
		if d.err == nil && (off < 0 || off > maxSequence) {
			d.fail("offset out of range")
		}
		return off, d.end()
	case kindAck:
		r := ackRec{lo: d.varint("first"), hi: d.varint("last")}
		if d.err == nil && (r.lo < 1 || r.hi < r.lo || r.hi > maxSequence) {
			d.fail("ack range out of order")
		}
		return r, d.end()
	case kindDead:
		r := deadRec{caseID: string(d.bytes("case id"))}
		r.local, r.wire = d.varint("sequence"), d.varint("wire sequence")
		r.at = time.Unix(0, d.varint("time")).UTC()
		r.status = d.bytes("status")
		r.batch = d.bytes("batch")
		if d.err == nil && (r.local < 1 || r.local > maxSequence || r.wire < 1 || r.wire > 2*maxSequence) {
			d.fail("sequence out of range")
		}
		return r, d.end()
	default:
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: kind %q", errBadRecord, kind)
	}
}

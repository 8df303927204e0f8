package perfusion

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// Files in a spool directory.
const (
	segPrefix    = "seg-"
	segSuffix    = ".log"
	deadFileName = "deadletter.log"
	lockFileName = "lock"
)

// ErrSpoolMismatch is returned by OpenSampleStreamer when the spool
// directory holds another case's or source's data.
var ErrSpoolMismatch = errors.New("perfusion: the spool directory belongs to another case or source")

// ErrSpoolLocked is returned by OpenSampleStreamer when another streamer
// (in this or another process) has the spool directory open.
var ErrSpoolLocked = errors.New("perfusion: the spool directory is in use by another streamer")

// segment is one append-only spool file.
type segment struct {
	index uint64
	path  string
	f     *os.File // open while the segment is active
	off   int64    // end of the intact data
	live  int      // batches with records here that are not resolved yet
}

// spool is the on-disk side of a SampleStreamer: segments of sample
// records plus a dead-letter file. It is not safe for concurrent use; the
// streamer serializes access.
type spool struct {
	dir    string
	log    *slog.Logger
	lock   *os.File
	hdr    header
	segs   []*segment // in order; the last is active
	dead   *os.File
	deadAt int64
}

// recovered is what a spool held when it was opened.
type recovered struct {
	batches   []*builder // unresolved batches in local order, each complete
	nextLocal int64
	offset    int64
	verified  bool
	truncated int // torn tails cut off
}

func segName(index uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, index, segSuffix) }

// openSpool locks dir, reads what it holds, truncates torn tails, starts a
// new active segment and deletes segments with nothing left to send.
func openSpool(dir, caseID, sourceID string, log *slog.Logger) (*spool, *recovered, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("perfusion: spool: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockFileName))
	if err != nil {
		return nil, nil, err
	}
	sp := &spool{dir: dir, log: log, lock: lock}
	rec, err := sp.recover(caseID, sourceID)
	if err != nil {
		sp.close()
		return nil, nil, err
	}
	return sp, rec, nil
}

func (sp *spool) recover(caseID, sourceID string) (*recovered, error) {
	names, err := sp.segmentNames()
	if err != nil {
		return nil, err
	}
	rec := &recovered{nextLocal: 1}
	byLocal := map[int64]*builder{}
	var lastIndex uint64
	for i, name := range names {
		index, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 64)
		lastIndex = max(lastIndex, index)
		seg := &segment{index: index, path: filepath.Join(sp.dir, name)}
		payloads, torn, err := sp.readFile(seg.path, i == len(names)-1)
		if err != nil {
			return nil, err
		}
		if torn {
			rec.truncated++
		}
		if fi, err := os.Stat(seg.path); err == nil {
			seg.off = fi.Size() // for the quota: what the segment holds on disk
		}
		sp.segs = append(sp.segs, seg)
		for j, p := range payloads {
			r, err := decodeRecord(p)
			if err != nil {
				return nil, fmt.Errorf("perfusion: spool %s record %d: %w", name, j, err)
			}
			if _, ok := r.(header); ok != (j == 0) {
				return nil, fmt.Errorf("perfusion: spool %s record %d: %w: a segment starts with its header, and only there", name, j, errBadRecord)
			}
			switch r := r.(type) {
			case header:
				if r.caseID != caseID || r.sourceID != sourceID {
					return nil, fmt.Errorf("%w: %s holds case %s source %q", ErrSpoolMismatch, name, r.caseID, r.sourceID)
				}
				rec.nextLocal = max(rec.nextLocal, r.nextLocal)
				if r.verified || !rec.verified {
					rec.offset, rec.verified = r.offset, r.verified
				}
			case samplesRec:
				b := byLocal[r.local]
				if b == nil {
					b = newBuilder(r.local)
					byLocal[r.local] = b
				}
				b.add(r.series)
				b.addSeg(seg)
				rec.nextLocal = max(rec.nextLocal, r.local+1)
			case int64:
				rec.offset, rec.verified = r, true
			case ackRec:
				forget := func(local int64) {
					if b := byLocal[local]; b != nil {
						for _, seg := range b.segs {
							seg.live--
						}
						delete(byLocal, local)
					}
				}
				if n := r.hi - r.lo; n < int64(len(byLocal)) {
					for k := int64(0); k <= n; k++ {
						forget(r.lo + k)
					}
				} else {
					for l := range byLocal {
						if l >= r.lo && l <= r.hi {
							forget(l)
						}
					}
				}
			default:
				return nil, fmt.Errorf("perfusion: spool %s record %d: %w: unexpected kind", name, j, errBadRecord)
			}
		}
	}

	dead, err := sp.openDeadLetters()
	if err != nil {
		return nil, err
	}
	for local := range dead {
		rec.nextLocal = max(rec.nextLocal, local+1)
		if b := byLocal[local]; b != nil {
			for _, seg := range b.segs {
				seg.live--
			}
			delete(byLocal, local)
		}
	}
	for _, b := range byLocal {
		rec.batches = append(rec.batches, b)
	}
	slices.SortFunc(rec.batches, func(a, b *builder) int { return int(a.local - b.local) })

	// A new active segment; then the old ones without pending batches go.
	sp.hdr = header{caseID: caseID, sourceID: sourceID, nextLocal: rec.nextLocal, offset: rec.offset, verified: rec.verified}
	if err := sp.newSegment(lastIndex + 1); err != nil {
		return nil, err
	}
	sp.compact()
	return rec, nil
}

// segmentNames lists the segment files in order.
func (sp *spool) segmentNames() ([]string, error) {
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		return nil, fmt.Errorf("perfusion: spool: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, segPrefix) && strings.HasSuffix(n, segSuffix) && e.Type().IsRegular() {
			if _, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, segPrefix), segSuffix), 10, 64); err == nil {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names) // zero-padded: name order is index order
	return names, nil
}

// readFile returns the intact records of a spool file and truncates
// anything after them. A torn tail in the last segment or the dead-letter
// file is what a crash mid-write leaves: those bytes were never reported
// written, and are dropped. Damage anywhere else is not expected; its
// bytes are kept in a ".corrupt" copy for inspection, and logged.
func (sp *spool) readFile(path string, expectTorn bool) (payloads [][]byte, torn bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("perfusion: spool: %w", err)
	}
	payloads, good, ferr := readFrames(data)
	if ferr == nil {
		return payloads, false, nil
	}
	name := filepath.Base(path)
	if expectTorn {
		sp.log.Warn("perfusion: spool: truncating a torn tail left by a crash", "file", name, "offset", good, "bytes", len(data)-good, "why", ferr.Error())
	} else {
		keep := path + ".corrupt-" + strconv.FormatInt(time.Now().UnixNano(), 10)
		if err := os.WriteFile(keep, data[good:], 0o600); err != nil {
			return nil, false, fmt.Errorf("perfusion: spool: keep corrupt bytes of %s: %w", name, err)
		}
		sp.log.Error("perfusion: spool: damaged file; the bytes after its last intact record are kept aside",
			"file", name, "offset", good, "bytes", len(data)-good, "kept_in", filepath.Base(keep), "why", ferr.Error())
	}
	if err := truncateSync(path, int64(good)); err != nil {
		return nil, false, err
	}
	return payloads, true, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("perfusion: spool: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("perfusion: spool: truncate: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("perfusion: spool: sync: %w", err)
	}
	return nil
}

// openDeadLetters reads the dead-letter file (if any), returns the local
// sequences it holds, and keeps it open for appending.
func (sp *spool) openDeadLetters() (map[int64]bool, error) {
	path := filepath.Join(sp.dir, deadFileName)
	dead := map[int64]bool{}
	payloads, _, err := sp.readFile(path, true)
	if errors.Is(err, fs.ErrNotExist) {
		return dead, nil
	} else if err != nil {
		return nil, err
	}
	for j, p := range payloads {
		r, err := decodeRecord(p)
		if err != nil {
			return nil, fmt.Errorf("perfusion: spool %s record %d: %w", deadFileName, j, err)
		}
		d, ok := r.(deadRec)
		if !ok {
			return nil, fmt.Errorf("perfusion: spool %s record %d: %w: not a dead letter", deadFileName, j, errBadRecord)
		}
		dead[d.local] = true
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("perfusion: spool: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("perfusion: spool: %w", err)
	}
	sp.dead, sp.deadAt = f, st.Size()
	return dead, nil
}

// active is the segment new records go to.
func (sp *spool) active() *segment { return sp.segs[len(sp.segs)-1] }

// newSegment makes the segment with the given index the active one: its
// header is on disk (file and directory synced) before the previous active
// segment is synced and closed.
func (sp *spool) newSegment(index uint64) error {
	path := filepath.Join(sp.dir, segName(index))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("perfusion: spool: new segment: %w", err)
	}
	frame := appendFrame(nil, encodeHeader(sp.hdr))
	if _, err := f.WriteAt(frame, 0); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("perfusion: spool: write segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("perfusion: spool: sync: %w", err)
	}
	if err := syncDir(sp.dir); err != nil {
		f.Close()
		return err
	}
	if n := len(sp.segs); n > 0 && sp.segs[n-1].f != nil {
		old := sp.segs[n-1]
		err := old.f.Sync()
		old.f.Close()
		old.f = nil
		if err != nil {
			return fmt.Errorf("perfusion: spool: sync: %w", err)
		}
	}
	sp.segs = append(sp.segs, &segment{index: index, path: path, f: f, off: int64(len(frame))})
	return nil
}

// rotate starts a new active segment, carrying the numbering forward.
func (sp *spool) rotate(nextLocal int64) error {
	sp.hdr.nextLocal = nextLocal
	if err := sp.newSegment(sp.active().index + 1); err != nil {
		return err
	}
	sp.compact()
	return nil
}

// compact deletes every inactive segment with no pending batch. A failed
// delete is retried at the next compaction; a delete lost in a crash only
// means its batches are resent and acknowledged as duplicates.
func (sp *spool) compact() {
	keep := sp.segs[:0]
	for i, seg := range sp.segs {
		if i < len(sp.segs)-1 && seg.live <= 0 {
			if err := os.Remove(seg.path); err == nil || errors.Is(err, fs.ErrNotExist) {
				continue
			} else {
				sp.log.Warn("perfusion: spool: cannot delete an acknowledged segment", "file", filepath.Base(seg.path), "err", err.Error())
			}
		}
		keep = append(keep, seg)
	}
	clear(sp.segs[len(keep):])
	sp.segs = keep
}

// write appends records to the active segment in one write. On failure
// the segment is truncated back, so a record is either wholly there or
// not at all and later records stay readable.
func (sp *spool) write(payloads ...[]byte) error {
	var buf []byte
	for _, p := range payloads {
		buf = appendFrame(buf, p)
	}
	seg := sp.active()
	if _, err := seg.f.WriteAt(buf, seg.off); err != nil {
		if terr := seg.f.Truncate(seg.off); terr != nil {
			return fmt.Errorf("perfusion: spool: write failed (%v) and truncating back failed: %w", err, terr)
		}
		return fmt.Errorf("perfusion: spool: write: %w", err)
	}
	seg.off += int64(len(buf))
	return nil
}

// sync makes the active segment durable.
func (sp *spool) sync() error {
	if err := sp.active().f.Sync(); err != nil {
		return fmt.Errorf("perfusion: spool: sync: %w", err)
	}
	return nil
}

// writeDead appends a dead letter and syncs it, creating the file on first
// use.
func (sp *spool) writeDead(r deadRec) error {
	if sp.dead == nil {
		path := filepath.Join(sp.dir, deadFileName)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("perfusion: spool: dead-letter file: %w", err)
		}
		if err := syncDir(sp.dir); err != nil {
			f.Close()
			return err
		}
		sp.dead, sp.deadAt = f, 0
	}
	frame := appendFrame(nil, encodeDead(r))
	if _, err := sp.dead.WriteAt(frame, sp.deadAt); err != nil {
		_ = sp.dead.Truncate(sp.deadAt)
		return fmt.Errorf("perfusion: spool: write dead letter: %w", err)
	}
	if err := sp.dead.Sync(); err != nil {
		return fmt.Errorf("perfusion: spool: sync dead letter: %w", err)
	}
	sp.deadAt += int64(len(frame))
	return nil
}

// release notes that batch b is resolved (acknowledged or dead-lettered)
// and deletes segments left with nothing pending.
func (sp *spool) release(segs []*segment) {
	gone := false
	for _, seg := range segs {
		seg.live--
		if seg.live <= 0 && seg != sp.active() {
			gone = true
		}
	}
	if gone {
		sp.compact()
	}
}

// close closes the files and releases the lock, writing nothing.
func (sp *spool) close() {
	for _, seg := range sp.segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
	}
	if sp.dead != nil {
		sp.dead.Close()
		sp.dead = nil
	}
	if sp.lock != nil {
		unlockDir(sp.lock)
		sp.lock = nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("perfusion: spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("perfusion: spool: sync directory: %w", err)
	}
	return nil
}

// DeadLetter is a batch the server rejected as invalid (InvalidArgument)
// or as a different batch under a sequence already used (AlreadyExists).
// It is kept in the spool directory's dead-letter file and never sent
// again; the samples in it are not on the record.
type DeadLetter struct {
	// CaseID and SourceID say whose batch it is.
	CaseID, SourceID string
	// Sequence is the batch's sequence as sent to the server. It stays
	// unused on the server: later batches keep their numbers.
	Sequence int64
	// Batch is the batch as sent.
	Batch *pb.SampleBatch
	// Err is the server's status, with its field violations (see
	// FieldViolations).
	Err error
	// At is when the batch was dead-lettered.
	At time.Time
}

// ReadDeadLetters returns the dead letters kept in a spool directory, oldest
// first, for an operator or a repair tool. It reads without locking, so it
// may run while a streamer has the directory open; a record being written
// at that moment is left out.
func ReadDeadLetters(spoolDir string) ([]DeadLetter, error) {
	data, err := os.ReadFile(filepath.Join(spoolDir, deadFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("perfusion: %w", err)
	}
	payloads, _, _ := readFrames(data)
	var out []DeadLetter
	for j, p := range payloads {
		r, err := decodeRecord(p)
		d, ok := r.(deadRec)
		if err != nil || !ok {
			return out, fmt.Errorf("perfusion: %s record %d: %w", deadFileName, j, errBadRecord)
		}
		dl := DeadLetter{CaseID: d.caseID, Sequence: d.wire, Batch: &pb.SampleBatch{}, At: d.at}
		if err := proto.Unmarshal(d.batch, dl.Batch); err != nil {
			return out, fmt.Errorf("perfusion: %s record %d: %w", deadFileName, j, errBadRecord)
		}
		dl.SourceID = dl.Batch.GetSourceId()
		var st spb.Status
		if err := proto.Unmarshal(d.status, &st); err == nil {
			dl.Err = status.FromProto(&st).Err()
		}
		out = append(out, dl)
	}
	return out, nil
}

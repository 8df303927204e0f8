package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
	"perfusion/clients/pumpsim/sim"
)

// resumeWindow is how far before a source's last stored sample the resume
// looks for each channel's last stored sample. A source's channels stop
// within one send of each other (a crash mid-write of the spool keeps a
// prefix of the send), which is at most ten simulated seconds; the window
// is ample.
const resumeWindow = 5 * time.Minute

// onRecord is what a resumed case already holds on the server: the replay
// of the simulation skips it, so every sample and entry is charted once.
type onRecord struct {
	// last is each channel's last stored device time (ms); a reading is
	// sent only when it is later. A channel whose source has nothing
	// stored is absent.
	last map[string]int64
	// entries are the entry ids on the record.
	entries map[string]bool
	// from is the first simulated second some source has left to send.
	from time.Duration
	// sources is how many of the simulated sources had data.
	sources int
}

// stored reports whether the case holds channel ch's reading at ms.
func (r *onRecord) stored(ch string, ms int64) bool {
	if r == nil {
		return false
	}
	l, ok := r.last[ch]
	return ok && ms <= l
}

// hasEntry reports whether the case holds entry id.
func (r *onRecord) hasEntry(id string) bool { return r != nil && r.entries[id] }

// readRecord asks the server what a case holds. The caller first flushes
// the streamers it reopened on the case's spool, so everything the killed
// run had handed to its streamers is on the server by now.
func readRecord(ctx context.Context, c *perfusion.Client, caseID string, simStart time.Time) (*onRecord, error) {
	r := &onRecord{last: map[string]int64{}, entries: map[string]bool{}, from: -1}
	ls, err := c.ListSources(ctx, &pb.ListSourcesRequest{CaseId: caseID})
	if err != nil {
		return nil, fmt.Errorf("ListSources: %w", err)
	}
	lastOf := map[sim.Source]int64{}
	for _, s := range ls.GetSources() {
		lastOf[sim.Source(s.GetSourceId())] = s.GetLastSampleAt().AsTime().UnixMilli()
	}
	for _, src := range sources {
		lastMs, ok := lastOf[src]
		if !ok { // nothing stored: the source starts at second 0
			r.from = 0
			continue
		}
		r.sources++
		if at := time.Duration(lastMs-simStart.UnixMilli())*time.Millisecond + time.Second; r.from < 0 || at < r.from {
			r.from = at
		}
		lo := lastMs - resumeWindow.Milliseconds()
		for ch, s := range sim.SourceOf {
			if s == src {
				r.last[ch] = lo - 1 // nothing of ch in the window: all before it is stored
			}
		}
		q, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: caseID, SourceId: string(src),
			Start: timestamppb.New(time.UnixMilli(lo))})
		if err != nil {
			return nil, fmt.Errorf("QuerySamples %s: %w", src, err)
		}
		for _, rs := range q.GetRaw() {
			if ts := rs.GetOccurredAtUnixMs(); len(ts) > 0 {
				r.last[rs.GetChannel()] = max(r.last[rs.GetChannel()], ts[len(ts)-1])
			}
		}
	}
	le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: true})
	if err != nil {
		return nil, fmt.Errorf("ListEntries: %w", err)
	}
	for _, e := range le.GetEntries() {
		r.entries[e.GetEntryId()] = true
	}
	return r, nil
}

// entryID is the id of the j-th entry made from the n-th simulated event
// of a case: the same on every replay of the case's simulation, so an
// entry charted before a crash is charted again as the same entry (the
// server stores it once) and never as a copy.
func entryID(caseID uuid.UUID, n, j int) string {
	return uuid.NewSHA1(caseID, fmt.Appendf(nil, "pumpsim/event/%d/entry/%d", n, j)).String()
}

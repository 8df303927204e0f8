package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
)

// principalHeader names the caller to a server run with --dev-header-auth
// (the --spawn server).
const principalHeader = "x-perfusion-principal"

// run is one measurement, phase by phase: server, cases, history, ingest,
// stored size, queries, baseline. A failure before or during ingest is
// fatal (there is nothing to report); a later phase that fails is noted in
// the report, which is still returned, and makes it not ok.
func run(ctx context.Context, c *config, progress io.Writer) (*report, error) {
	addr, pid, dsn := c.addr, c.serverPID, c.databaseURL
	var exited <-chan struct{}
	logPath := ""
	if c.spawn {
		s, err := spawnServer(ctx, c, progress)
		if err != nil {
			return nil, err
		}
		defer s.stop(progress)
		addr, pid, dsn, exited, logPath = s.addr, s.pid(), s.dsn, s.exited, s.logPath
	}
	rep := newReport(c, addr, dsn != "")
	ctx = metadata.AppendToOutgoingContext(ctx, principalHeader, c.principal)
	if tok := os.Getenv("PERFUSION_TOKEN"); tok != "" && !c.spawn {
		// A running server (--addr) authenticates by token: one from
		// `perfusiond token --roles perfusionist`. A spawned one
		// trusts the development header.
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(tok))
	}
	control, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer control.Close()
	if err := waitServing(ctx, control, exited, logPath); err != nil {
		return nil, err
	}
	caseIDs, err := createCases(ctx, c, pb.NewCaseServiceClient(control))
	if err != nil {
		return nil, err
	}
	chartingClient := pb.NewChartingServiceClient(control)

	// Device-time origins: max-rate streams start days back; real-time
	// streams start now, so a real-time history ends before the first
	// live batch (an interval and a second of margin).
	now := time.Now().Truncate(time.Second)
	originMs := now.Add(-maxRateBack).UnixMilli()
	historyEnd := originMs
	if !c.maxRate {
		historyEnd = now.Add(-c.batchInterval - time.Second).UnixMilli()
	}
	var queryFromMs int64
	if c.history > 0 {
		fmt.Fprintf(progress, "loadgen: loading %s of history into case %s\n", c.history, caseIDs[0])
		h, err := loadHistory(ctx, c, chartingClient, caseIDs[0], historyEnd)
		if err != nil {
			return nil, err
		}
		rep.addHistory(h)
		queryFromMs = historyEnd - c.history.Milliseconds()
	}

	var before storedSize
	if dsn != "" {
		if before, err = measureStored(ctx, dsn); err != nil {
			rep.fail("stored size not measured: %v", err)
			dsn = ""
		}
	}

	var errs errorCounts
	ing, err := ingest(ctx, c, addr, caseIDs, originMs, pid, &errs, progress)
	if err != nil {
		return nil, err
	}
	rep.addIngest(c, ing, &errs)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	if dsn != "" {
		after, err := measureStored(ctx, dsn)
		if err != nil {
			rep.fail("stored size not measured: %v", err)
		} else {
			rep.addStorage(growth(before, after), rep.Ingest.SamplesAcked)
		}
	}

	if c.queryIters > 0 {
		first := ing.streams[0]
		if c.history == 0 {
			queryFromMs = first.originMs
		}
		if first.lastMs <= queryFromMs {
			rep.fail("query not measured: the queried case has no acknowledged data")
		} else {
			fmt.Fprintf(progress, "loadgen: %d QuerySamples calls\n", c.queryIters)
			rep.addQuery(measureQueries(ctx, c, chartingClient, caseIDs[0], queryFromMs, first.lastMs))
		}
	}

	if c.baseline && c.databaseURL != "" && rep.Ingest.SamplesAcked > 0 {
		perCase := make([]int64, len(ing.streams))
		for i, s := range ing.streams {
			perCase[i] = s.samplesAcked
		}
		b, err := runBaseline(ctx, c, c.databaseURL, caseIDs, perCase, progress)
		if err != nil {
			rep.fail("baseline not measured: %v", err)
		} else {
			rep.addBaseline(b)
		}
	}
	return rep, ctx.Err()
}

// createCases creates the simulated cases, 16 at a time.
func createCases(ctx context.Context, c *config, client pb.CaseServiceClient) ([]string, error) {
	ids := make([]string, c.cases)
	errs := make([]error, c.cases)
	parallel(c.cases, 16, func(i int) {
		r, err := client.CreateCase(ctx, &pb.CreateCaseRequest{Kind: pb.CaseKind_CASE_KIND_CPB, Site: "LOADGEN",
			Room: fmt.Sprintf("OR-%d", i+1), ScheduledStart: timestamppb.Now()})
		if err != nil {
			errs[i] = err
			return
		}
		ids[i] = r.Case.CaseId
	})
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("create cases: %w", err)
		}
	}
	return ids, nil
}

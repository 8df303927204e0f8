package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/uuid"

	"perfusion/store"
	"perfusion/store/archive"
)

// archiveSuffix names case archive files, so a directory of them can be
// imported whole.
const archiveSuffix = ".perfusion-case.ndjson"

// export writes case archives (store/archive) from the selected store into
// a directory, one file per case: how a pilot on the embedded store moves
// its records to the hospital's PostgreSQL.
func (a *app) export(ctx context.Context, args []string) error {
	fs := a.newFlagSet("export", "export --to DIR [--case ID] [flags]")
	env := envFlags{}
	c := a.commonFlags(fs, env)
	var to, only string
	fs.StringVar(&to, "to", "", "directory to write <case_id>"+archiveSuffix+" files into; created if missing (required)")
	fs.StringVar(&only, "case", "", "export only this case (UUID); default: every case")
	if err := a.parse(fs, env, args); err != nil {
		return err
	}
	if c.version {
		a.printVersion()
		return nil
	}
	if to == "" {
		return usageErrorf("--to DIR is required")
	}
	var ids []uuid.UUID
	if only != "" {
		id, err := uuid.Parse(only)
		if err != nil {
			return usageErrorf("--case must be a UUID")
		}
		ids = append(ids, id)
	}
	log, err := c.logger(a.stderr)
	if err != nil {
		return err
	}
	db, err := openDatabase(ctx, c, log)
	if err != nil {
		return err
	}
	defer closeDatabase(db, log)
	if _, err := prepareSchema(ctx, db, false, log); err != nil {
		return err
	}
	if ids == nil {
		if ids, err = allCaseIDs(ctx, db); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", to, err)
	}
	for _, id := range ids {
		path := filepath.Join(to, id.String()+archiveSuffix)
		if err := exportOne(ctx, db, id, path); err != nil {
			return fmt.Errorf("case %s: %w", id, err)
		}
		fmt.Fprintf(a.stdout, "exported %s to %s\n", id, path)
	}
	fmt.Fprintf(a.stdout, "%d case(s) exported\n", len(ids))
	return nil
}

func allCaseIDs(ctx context.Context, b store.Backend) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	f := store.CaseFilter{Limit: 500}
	for {
		cases, err := b.ListCases(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list cases: %w", err)
		}
		for _, c := range cases {
			ids = append(ids, c.ID)
		}
		if len(cases) < f.Limit {
			return ids, nil
		}
		last := cases[len(cases)-1]
		f.After = &store.CaseCursor{ScheduledStart: last.ScheduledStart, ID: last.ID}
	}
}

// exportOne writes one archive from a consistent snapshot, so a case being
// charted meanwhile is exported as it was at one instant. The file is
// created exclusively (0600: it holds patient data) and removed on failure.
func exportOne(ctx context.Context, b store.Backend, id uuid.UUID, path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	err = b.Snapshot(ctx, func(ctx context.Context, r store.Reader) error { return archive.Export(ctx, r, id, f) })
	if err != nil {
		return err
	}
	return f.Sync()
}

// importArchives reads case archives (a file, or every *.perfusion-case.ndjson
// in a directory) into the selected store. Each archive is verified before
// it is committed; an identical case already present is left as it is.
func (a *app) importArchives(ctx context.Context, args []string) error {
	fs := a.newFlagSet("import", "import --from FILE|DIR [flags]")
	env := envFlags{}
	c := a.commonFlags(fs, env)
	var from string
	var opts archive.ImportOptions
	fs.StringVar(&from, "from", "", "archive file, or directory of "+archiveSuffix+" files (required)")
	fs.BoolVar(&opts.AcceptNonconformingText, "accept-nonconforming-text", false,
		"import cases whose text breaks today's text rules (control characters kept by an older store) exactly as archived; without it they are refused, naming case and field")
	if err := a.parse(fs, env, args); err != nil {
		return err
	}
	if c.version {
		a.printVersion()
		return nil
	}
	if from == "" {
		return usageErrorf("--from FILE|DIR is required")
	}
	files, err := archiveFiles(from)
	if err != nil {
		return err
	}
	log, err := c.logger(a.stderr)
	if err != nil {
		return err
	}
	db, err := openDatabase(ctx, c, log)
	if err != nil {
		return err
	}
	defer closeDatabase(db, log)
	if _, err := prepareSchema(ctx, db, true, log); err != nil {
		return err
	}
	var failed, present int
	for _, path := range files {
		res, err := importOne(ctx, db, path, opts)
		if err != nil {
			failed++
			fmt.Fprintf(a.stderr, "%s: not imported: %v\n", filepath.Base(path), err)
			continue
		}
		if res.AlreadyPresent {
			// A re-import is a no-op: say so, not "imported".
			present++
			fmt.Fprintf(a.stdout, "already present %s from %s: the same record (ledger head %d), nothing added\n",
				res.CaseID, filepath.Base(path), res.Head.Seq)
			continue
		}
		fmt.Fprintf(a.stdout, "imported %s from %s: %d links, %d entries, %d sample batches (%d samples), %d signatures\n",
			res.CaseID, filepath.Base(path), res.Links, res.Entries, res.SampleBatches, res.Samples, res.Signatures)
	}
	fmt.Fprintf(a.stdout, "%d of %d archive(s) imported, %d already present, %d refused\n",
		len(files)-failed-present, len(files), present, failed)
	if failed > 0 {
		return fmt.Errorf("%d archive(s) were refused; nothing of them was stored", failed)
	}
	return nil
}

func importOne(ctx context.Context, b store.Backend, path string, opts archive.ImportOptions) (archive.Imported, error) {
	f, err := os.Open(path)
	if err != nil {
		return archive.Imported{}, err
	}
	defer f.Close()
	return archive.ImportCase(ctx, b, io.Reader(f), opts)
}

func archiveFiles(from string) ([]string, error) {
	st, err := os.Stat(from)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{from}, nil
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), archiveSuffix) {
			files = append(files, filepath.Join(from, e.Name()))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, errors.New("no " + archiveSuffix + " files in " + from)
	}
	return files, nil
}

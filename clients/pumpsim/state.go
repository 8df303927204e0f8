package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
)

// runArgs are the arguments that shape a run's cases, their data and its
// timing. A run is resumed only by a pumpsim started with the same ones;
// --close and --sign may differ (they only say how the cases end), as may
// the credentials and --progress.
type runArgs struct {
	Addr        string  `json:"addr"`
	Seed        uint64  `json:"seed"`
	Speed       float64 `json:"speed"`
	Cases       int     `json:"cases"`
	ECMO        bool    `json:"ecmo"`
	Duration    string  `json:"duration"`
	HeightCm    float64 `json:"height_cm"`
	WeightKg    float64 `json:"weight_kg"`
	TargetTempC float64 `json:"target_temp_c"`
	Arrest      string  `json:"arrest"`
	BSAFormula  string  `json:"bsa_formula"`
}

func argsOf(cfg Config) runArgs {
	f := cfg.BSAFormula
	if f == "" {
		f = "mosteller"
	}
	return runArgs{Addr: cfg.Addr, Seed: cfg.Seed, Speed: cfg.Speed, Cases: cfg.Cases, ECMO: cfg.ECMO,
		Duration: cfg.Duration.String(), HeightCm: cfg.HeightCm, WeightKg: cfg.WeightKg, TargetTempC: cfg.TargetTempC,
		Arrest: cfg.Arrest.String(), BSAFormula: f}
}

// fingerprint names a run's state file: runs with other arguments keep
// their own, so they neither resume nor overwrite each other's cases. 16
// hex digits, so no UUID pattern ever matches it in the output.
func (a runArgs) fingerprint() string {
	b, _ := json.Marshal(a) // plain fields: cannot fail
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// stateVersion is the state file's format.
const stateVersion = 1

// runState is what a restarted pumpsim needs to resume a run: the cases it
// made and where their simulated time lies. Everything else (what each
// case already holds) is asked of the server and the spool, which know it
// for certain. It is written once, before any case is created, and removed
// when every case has finished.
type runState struct {
	Version int     `json:"version"`
	Args    runArgs `json:"args"`
	// T0 is when the run started (wall clock); with --speed it anchors the
	// pacing.
	T0 time.Time `json:"t0"`
	// SimStart is the device time of simulated second 0 (and the cases'
	// scheduled start).
	SimStart time.Time `json:"sim_start"`
	// CaseIDs are the client-made case ids, case i at index i.
	CaseIDs []string `json:"case_ids"`
}

// stateFile is a run's state file in the spool directory and the lock
// that keeps two pumpsims from running the same cases at once.
type stateFile struct {
	path string
	lock *os.File
}

// openState locks the state of a run with cfg's arguments and returns it:
// the saved one when there is one (resume), else a new one, saved before
// it is returned so that a crash at any later point can be resumed.
func openState(cfg Config, now time.Time) (*stateFile, *runState, bool, error) {
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("spool directory: %w", err)
	}
	args := argsOf(cfg)
	base := filepath.Join(cfg.SpoolDir, "pumpsim-"+args.fingerprint())
	lock, err := lockFile(base + ".lock")
	if err != nil {
		return nil, nil, false, err
	}
	sf := &stateFile{path: base + ".json", lock: lock}
	st, err := sf.load(args)
	if err != nil {
		sf.close()
		return nil, nil, false, err
	}
	if st != nil {
		return sf, st, true, nil
	}
	wall := time.Duration(0)
	if cfg.Speed > 0 {
		wall = time.Duration(float64(cfg.Duration) / cfg.Speed)
	}
	st = &runState{Version: stateVersion, Args: args, T0: now,
		// The last sample (at SimStart + Duration − 1 s) is due at T0 +
		// wall, never ahead of the wall clock.
		SimStart: now.Add(wall - cfg.Duration).Truncate(time.Second)}
	for range cfg.Cases {
		st.CaseIDs = append(st.CaseIDs, uuid.NewString())
	}
	if err := sf.save(st); err != nil {
		sf.close()
		return nil, nil, false, err
	}
	return sf, st, false, nil
}

// load reads the saved state; nil when there is none.
func (sf *stateFile) load(args runArgs) (*runState, error) {
	b, err := os.ReadFile(sf.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read run state: %w", err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("run state %s is damaged (remove it to start new cases): %w", sf.path, err)
	}
	switch {
	case st.Version != stateVersion:
		return nil, fmt.Errorf("run state %s has format %d, this pumpsim reads %d (remove it to start new cases)", sf.path, st.Version, stateVersion)
	case st.Args != args || len(st.CaseIDs) != args.Cases:
		// Only a hash collision gets here: the name is the arguments' hash.
		return nil, fmt.Errorf("run state %s is of other arguments (remove it to start new cases)", sf.path)
	}
	for _, id := range st.CaseIDs {
		if _, err := uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("run state %s holds a bad case id (remove it to start new cases)", sf.path)
		}
	}
	return &st, nil
}

// save writes the state atomically: a crash leaves the old file or the new
// one, never a torn one, and the rename is durable before save returns.
func (sf *stateFile) save(st *runState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run state: %w", err)
	}
	tmp := sf.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write run state: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write run state: %w", err)
	}
	if err := os.Rename(tmp, sf.path); err != nil {
		return fmt.Errorf("write run state: %w", err)
	}
	return syncDir(filepath.Dir(sf.path))
}

// remove deletes the state of a finished run, so the same arguments start
// new cases next time.
func (sf *stateFile) remove() error {
	if err := os.Remove(sf.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove run state: %w", err)
	}
	return syncDir(filepath.Dir(sf.path))
}

// close releases the lock. The (empty) lock file stays: deleting it could
// let two processes lock two different files of the same name.
func (sf *stateFile) close() { unlockFile(sf.lock) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync spool directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync spool directory: %w", err)
	}
	return nil
}

// Package e2e runs the README's simulated walk-through with the real
// binaries: perfusiond on its embedded store, pumpsim streaming a case
// through the client library, and perfusionctl closing, signing and
// verifying it. It is the test that keeps the README true.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// run runs a binary and returns its stdout; it fails the test on a
// non-zero exit unless wantCode says otherwise.
func run(t *testing.T, wantCode int, bin string, args ...string) string {
	return runEnv(t, nil, wantCode, bin, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, env []string, wantCode int, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", filepath.Base(bin), args, err)
	}
	if code != wantCode {
		t.Fatalf("%s %v exited %d, want %d\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), args, code, wantCode, out.String(), errb.String())
	}
	return out.String()
}

func TestReadmeWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("TestReadmeWalkThrough: builds and runs three binaries; skipped in -short")
	}
	bins := t.TempDir()
	perfusiond := build(t, bins, "./cmd/perfusiond")
	pumpsim := build(t, bins, "./clients/pumpsim")
	ctl := build(t, bins, "./clients/perfusionctl")

	addr := freeAddr(t)
	data := t.TempDir()
	srv := exec.Command(perfusiond, "--listen", addr, "--http-listen", "127.0.0.1:0", "--data-dir", data, "--log-format", "text")
	var logs bytes.Buffer
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	// The walk-through logs in with a development token of the server's
	// own key (created by whichever of the two comes first).
	token := strings.TrimSpace(run(t, 0, perfusiond, "token", "--data-dir", data, "--subject", "perfusionist-1", "--roles", "perfusionist", "--sites", "MAIN,SIM"))
	env := []string{"PERFUSION_TOKEN=" + token, "PERFUSION_PRINCIPAL="}

	// pumpsim retries until the server is up (the client library waits out
	// Unavailable), so no separate readiness poll is needed. It runs in the
	// background, paced, while perfusionctl watches the case live.
	sim := exec.Command(pumpsim, "--addr", addr, "--speed", "540", "--duration", "45m", "--spool-dir", filepath.Join(data, "spool"), "--progress", "1h")
	sim.Env = append(os.Environ(), env...)
	simOut, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var simErr bytes.Buffer
	sim.Stderr = &simErr
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(simOut)
	var out strings.Builder
	var id string
	for id == "" && lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		id = regexp.MustCompile(`[0-9a-f-]{36}`).FindString(lines.Text())
	}
	if id == "" {
		sim.Wait()
		t.Fatalf("pumpsim printed no case id:\n%s%s", out.String(), simErr.String())
	}
	p := []string{"--addr", addr}
	with := func(args ...string) []string { return append(append([]string{}, p...), args...) }

	watch := exec.Command(ctl, with("case", "watch", id, "--channels", "pump_flow,temp_arterial_outlet,inline_hct", "--bucket", "1m")...)
	watch.Env = append(os.Environ(), env...)
	var watched, watchErr bytes.Buffer
	watch.Stdout, watch.Stderr = &watched, &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- watch.Wait() }()
	t.Cleanup(func() { watch.Process.Kill() })

	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	if err := sim.Wait(); err != nil {
		t.Fatalf("pumpsim: %v\n%s%s", err, out.String(), simErr.String())
	}
	m := regexp.MustCompile(`case ([0-9a-f-]{36}): (\d+) samples \((\d+) invalid\), (\d+) entries`).FindStringSubmatch(out.String())
	if m == nil || m[1] != id {
		t.Fatalf("pumpsim printed no summary of case %s:\n%s", id, out.String())
	}
	if m[2] == "0" || m[4] == "0" {
		t.Fatalf("pumpsim sent nothing: %s", m[0])
	}

	trend := runEnv(t, env, 0, ctl, with("samples", "query", id, "--channels", "pump_flow,temp_arterial_outlet", "--buckets", "12")...)
	if !strings.Contains(trend, "pump_flow") || strings.Count(trend, "\n") < 10 {
		t.Fatalf("trend table:\n%s", trend)
	}
	sources := runEnv(t, env, 0, ctl, with("samples", "sources", id)...)
	if !strings.HasPrefix(sources, "SOURCE") || strings.Count(sources, "\n") < 2 {
		t.Fatalf("sources table:\n%s", sources)
	}
	entries := runEnv(t, env, 0, ctl, with("entry", "list", id)...)
	for _, want := range []string{"bypass-on", "cross-clamp-on", "heparin"} {
		if !strings.Contains(entries, want) {
			t.Fatalf("entry list lacks %q:\n%s", want, entries)
		}
	}
	runEnv(t, env, 4, ctl, with("case", "sign", id, "--meaning", "authored", "--name", "P. Perfusionist")...) // not closed yet
	runEnv(t, env, 0, ctl, with("case", "close", id)...)
	runEnv(t, env, 0, ctl, with("case", "sign", id, "--meaning", "authored", "--name", "P. Perfusionist")...)
	// The watch saw the case as it ran and ends by itself at sign-off.
	select {
	case err := <-watchDone:
		if err != nil {
			t.Fatalf("case watch: %v\n%s%s", err, watched.String(), watchErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("case watch did not end at sign-off:\n%s", watched.String())
	}
	for _, want := range []string{"pump_flow", "inline_hct", "bypass-on", "cross-clamp-off", "case signed"} {
		if !strings.Contains(watched.String(), want) {
			t.Fatalf("case watch printed no %q:\n%s", want, watched.String())
		}
	}
	verified := runEnv(t, env, 0, ctl, with("record", "verify", id)...)
	if !strings.Contains(verified, "OK:") || !strings.Contains(verified, "("+m[2]+" samples)") {
		t.Fatalf("verify did not cover every sample pumpsim sent (%s):\n%s", m[2], verified)
	}
	audit := runEnv(t, env, 0, ctl, with("record", "audit", id)...)
	for _, kind := range []string{"case_created", "samples", "entry", "case_closed", "signature"} {
		if !strings.Contains(audit, kind) {
			t.Fatalf("audit trail lacks %s:\n%s", kind, audit)
		}
	}
	runEnv(t, env, 3, ctl, with("record", "verify", "00000000-0000-4000-8000-000000000000")...)
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("server logged errors:\n%s", logs.String())
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The command name may hold spaces and ')' (it is whatever the process
// calls itself), so fields must be counted from the last ')'; children's
// times (cutime, cstime) are not the process's own.
func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat(readTestdata(t, "proc_pid_stat"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (1234 + 567) * time.Second / 100; got != want {
		t.Errorf("cpu = %v, want %v (utime 1234 + stime 567 ticks)", got, want)
	}
}

func TestParseProcStatErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"no comm":     "4242 perfusiond S 1 2 3",
		"truncated":   "4242 (perfusiond) S 1 4242 4242 0 -1 4194560 5120 0 3 0",
		"not numbers": "4242 (perfusiond) S 1 4242 4242 0 -1 4194560 5120 0 3 0 x y 8 9 20",
	} {
		if _, err := parseProcStat([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseStatusKB(t *testing.T) {
	b := readTestdata(t, "proc_pid_status")
	for key, want := range map[string]int64{"VmHWM": 88420 * 1024, "VmRSS": 61312 * 1024, "VmSwap": 0} {
		got, err := parseStatusKB(b, key)
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := parseStatusKB(b, "VmMissing"); err == nil {
		t.Error("a missing key gave no error")
	}
	if _, err := parseStatusKB([]byte("VmHWM:\tlots kB\n"), "VmHWM"); err == nil {
		t.Error("a non-number gave no error")
	}
	if _, err := parseStatusKB([]byte("Threads:\t14\n"), "Threads"); err == nil {
		t.Error("a value without kB gave no error")
	}
}

// Busy is everything but idle and iowait over the first eight fields;
// guest time is already inside user and must not count twice.
func TestParseHostStat(t *testing.T) {
	h, err := parseHostStat(readTestdata(t, "proc_stat"))
	if err != nil {
		t.Fatal(err)
	}
	wantBusy := uint64(194654 + 12 + 61527 + 0 + 6601 + 277)
	if h.busy != wantBusy || h.total != wantBusy+575473+3273 {
		t.Errorf("got %+v, want busy %d total %d", h, wantBusy, wantBusy+575473+3273)
	}
	later := hostCPU{busy: h.busy + 150, total: h.total + 200}
	if got := busyCores(h, later, 2); got != 1.5 {
		t.Errorf("busyCores = %v, want 1.5 (150 of 200 ticks on 2 CPUs)", got)
	}
	if _, err := parseHostStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("no cpu line gave no error")
	}
}

// The live files parse too, on the machine the generator runs on.
func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := procCPU("/proc/self"); err != nil {
		t.Error(err)
	}
	if rss, err := procPeakRSS("/proc/self"); err != nil || rss <= 0 {
		t.Errorf("peak RSS %d, %v", rss, err)
	}
	if _, err := readHostCPU("/proc/stat"); err != nil {
		t.Error(err)
	}
}

func TestCores(t *testing.T) {
	if got := cores(3*time.Second, 2*time.Second); got != 1.5 {
		t.Errorf("cores = %v, want 1.5", got)
	}
	if got := cores(time.Second, 0); got != 0 {
		t.Errorf("cores over no time = %v, want 0", got)
	}
}

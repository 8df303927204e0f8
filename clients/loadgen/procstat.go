package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc. It is part of the
// kernel's user-space ABI and 100 on every architecture Go supports except
// alpha; reading it properly needs sysconf(_SC_CLK_TCK), i.e. cgo.
const clockTicks = 100

// procCPU returns the CPU time (user + system) a process has used so far,
// from /proc/<pid>/stat.
func procCPU(procDir string) (time.Duration, error) {
	b, err := os.ReadFile(procDir + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

// parseProcStat reads utime and stime (fields 14 and 15) from the content
// of /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last
// ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[14-3], 10, 64)
	stime, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: utime %q stime %q are not tick counts", f[14-3], f[15-3])
	}
	return ticks(utime + stime), nil
}

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// procPeakRSS returns the process's peak resident set size (VmHWM) in
// bytes, from /proc/<pid>/status.
func procPeakRSS(procDir string) (int64, error) {
	b, err := os.ReadFile(procDir + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, "VmHWM")
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status in bytes.
func parseStatusKB(b []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: %s is %q, want a number of kB", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("proc status: %s is %q, want a number of kB", key, f[0])
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("proc status: no %s line", key)
}

// resetPeakRSS resets the process's VmHWM to its current RSS (writing "5"
// to clear_refs, Linux 4.0+), so the peak we report is the ingest's own and
// not an earlier phase's, such as the history bulk load. It needs the same
// rights as ptrace; failure just leaves the lifetime peak, and says so.
func resetPeakRSS(procDir string) error {
	return os.WriteFile(procDir+"/clear_refs", []byte("5"), 0)
}

// hostCPU is the machine-wide CPU time from /proc/stat: busy and total, in
// ticks summed over all CPUs.
type hostCPU struct{ busy, total uint64 }

func readHostCPU(path string) (hostCPU, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return hostCPU{}, err
	}
	return parseHostStat(b)
}

// parseHostStat reads the aggregate "cpu" line of /proc/stat: user nice
// system idle iowait irq softirq steal [guest guest_nice]. Guest time is
// already counted in user and nice, so only the first eight fields are
// summed; idle and iowait are the not-busy part.
func parseHostStat(b []byte) (hostCPU, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return hostCPU{}, fmt.Errorf("proc stat: cpu line has %d fields", len(f))
		}
		var h hostCPU
		for i := 1; i < len(f) && i <= 8; i++ {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return hostCPU{}, fmt.Errorf("proc stat: cpu field %d is %q", i, f[i])
			}
			h.total += v
			if i != 4 && i != 5 { // idle, iowait
				h.busy += v
			}
		}
		return h, nil
	}
	return hostCPU{}, fmt.Errorf("proc stat: no cpu line")
}

// busyCores is how many CPUs' worth of the machine was busy between a and
// b, out of ncpu.
func busyCores(a, b hostCPU, ncpu int) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total) * float64(ncpu)
}

// cores is CPU time used per wall-clock time: 1.0 is one core fully busy.
func cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

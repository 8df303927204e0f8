package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// buildCtl builds perfusionctl into a fresh directory, which the shell
// tests put first on PATH: the completion scripts call the binary.
func buildCtl(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "perfusionctl"), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// TestShellCompletionScripts runs the printed bash and zsh scripts in the
// real shells, as a user's shell would at a TAB, and checks the candidates
// they produce. CI installs zsh (.ci/run); elsewhere a missing shell skips
// its subtest by name.
func TestShellCompletionScripts(t *testing.T) {
	bin := buildCtl(t)
	path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
	cases := []struct {
		words []string // after "perfusionctl"; the last is being completed
		want  string
	}{
		{[]string{"ca"}, "case"},
		{[]string{"entry", "add", "event", "--type", "bypass-o"}, "bypass-on"},
		{[]string{"samples", "ex"}, "export"},
	}
	scripts := map[string]string{"bash": bashCompletion, "zsh": zshCompletion}
	for _, sh := range []string{"bash", "zsh"} {
		t.Run(sh, func(t *testing.T) {
			shell, err := exec.LookPath(sh)
			if err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is not installed; CI must install it", sh)
				}
				t.Skipf("%s not installed", sh)
			}
			script := filepath.Join(t.TempDir(), "completion."+sh)
			if err := os.WriteFile(script, []byte(scripts[sh]), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				var prog string
				quoted := make([]string, len(c.words))
				for i, w := range c.words {
					quoted[i] = "'" + w + "'"
				}
				if sh == "bash" {
					prog = "source " + script + "; COMP_WORDS=(perfusionctl " + strings.Join(quoted, " ") + "); COMP_CWORD=" +
						strconv.Itoa(len(c.words)) + "; _perfusionctl; printf '%s\\n' \"${COMPREPLY[@]}\""
				} else {
					// Outside a completion widget compadd and compdef do not
					// exist: stand-ins print what the script hands them.
					prog = "compadd() { shift; print -l -- \"$@\"; }; compdef() { :; }; source " + script +
						"; words=(perfusionctl " + strings.Join(quoted, " ") + "); CURRENT=" + strconv.Itoa(len(c.words)+1) + "; _perfusionctl"
				}
				cmd := exec.Command(shell, "-c", prog)
				cmd.Env = append(os.Environ(), "PATH="+path)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %q: %v\n%s", sh, c.words, err, out)
				}
				if !contains(strings.Split(strings.TrimSpace(string(out)), "\n"), c.want) {
					t.Errorf("%s completes %q to %q, want %q among them", sh, c.words, out, c.want)
				}
			}
		})
	}
}

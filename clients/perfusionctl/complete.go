package main

import (
	"context"
	"flag"
	"io"
	"strings"
)

func completionCommand() *command {
	return &command{
		name: "completion", summary: "print a shell completion script (bash or zsh)", args: "bash|zsh",
		long: "Completes commands, flags and enum flag values.",
		examples: []string{
			"source <(perfusionctl completion bash)",
			"perfusionctl completion zsh > \"${fpath[1]}/_perfusionctl\"",
		},
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			return func(_ context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("which shell? bash or zsh")
				}
				switch args[0] {
				case "bash":
					_, err := io.WriteString(e.stdout, bashCompletion)
					return err
				case "zsh":
					_, err := io.WriteString(e.stdout, zshCompletion)
					return err
				}
				return usagef("unknown shell %q: bash or zsh", args[0])
			}
		},
	}
}

// The scripts ask the binary itself (the hidden __complete command) for
// candidates, so they never go stale as commands are added.
const bashCompletion = `# bash completion for perfusionctl
_perfusionctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$(perfusionctl __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "$cur"))
}
complete -F _perfusionctl perfusionctl
`

const zshCompletion = `#compdef perfusionctl
# zsh completion for perfusionctl
_perfusionctl() {
    local -a candidates
    candidates=("${(@f)$(perfusionctl __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -- "${candidates[@]}"
}
if [[ "$funcstack[1]" == "_perfusionctl" ]]; then
    _perfusionctl "$@"
else
    compdef _perfusionctl perfusionctl
fi
`

// complete is the hidden __complete command (run calls it before any
// flag parsing): given the words typed so far (the last one being
// completed), it returns candidates.
func complete(root *command, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, done := words[len(words)-1], words[:len(words)-1]
	node := root
	var prev string
	for _, w := range done {
		if strings.HasPrefix(w, "-") {
			prev = w
			continue
		}
		if node.setup == nil && !isValueOf(prev) {
			if next := child(node, w); next != nil {
				node = next
			}
		}
		prev = ""
	}
	var out []string
	add := func(s string) {
		if strings.HasPrefix(s, cur) {
			out = append(out, s)
		}
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	if node.setup != nil {
		node.setup(fs)
	}
	defineGlobals(fs, &globals{})
	// A flag's value: enum values are listed in the usage after ": ".
	if prev != "" && !strings.Contains(prev, "=") {
		if f := fs.Lookup(strings.TrimLeft(prev, "-")); f != nil {
			if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool {
				if f.Name == "output" {
					return filter([]string{"table", "json"}, cur)
				}
				if i := strings.LastIndex(f.Usage, ": "); i >= 0 && strings.Contains(f.Usage[i:], ", ") {
					return filter(strings.Split(strings.TrimSuffix(f.Usage[i+2:], " (required)"), ", "), cur)
				}
				return nil
			}
		}
	}
	if strings.HasPrefix(cur, "-") || node.setup != nil {
		fs.VisitAll(func(f *flag.Flag) { add("--" + f.Name) })
		return out
	}
	for _, c := range node.subs {
		if !c.hidden {
			add(c.name)
		}
	}
	if node == root {
		add("help")
	}
	return out
}

// isValueOf reports whether a word after flag prev is prev's value (so
// not a command name); only for flags written without '='.
func isValueOf(prev string) bool {
	if prev == "" || strings.Contains(prev, "=") {
		return false
	}
	g := &globals{}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	defineGlobals(fs, g)
	return fs.Lookup(strings.TrimLeft(prev, "-")) != nil
}

func filter(vals []string, prefix string) []string {
	var out []string
	for _, v := range vals {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

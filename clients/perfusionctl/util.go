package main

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// enumNames lists an enum's values in CLI form: the name without the
// type prefix, lower case, '-' for '_' (CASE_KIND_CPB → cpb).
func enumNames(ed protoreflect.EnumDescriptor) []string {
	var out []string
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		if v.Number() == 0 {
			continue
		}
		out = append(out, cliName(ed, string(v.Name())))
	}
	return out
}

func enumPrefix(ed protoreflect.EnumDescriptor) string {
	// CaseKind → CASE_KIND_
	var b strings.Builder
	for i, r := range string(ed.Name()) {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}

func cliName(ed protoreflect.EnumDescriptor, full string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(full, enumPrefix(ed))), "_", "-")
}

// parseEnum accepts the CLI form, any case, '-' or '_', with or without
// the type prefix.
func parseEnum(ed protoreflect.EnumDescriptor, flagName, s string) (protoreflect.EnumNumber, error) {
	want := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		if v.Number() == 0 {
			continue
		}
		if string(v.Name()) == want || string(v.Name()) == enumPrefix(ed)+want {
			return v.Number(), nil
		}
	}
	return 0, usagef("--%s: %q is not one of %s", flagName, s, strings.Join(enumNames(ed), ", "))
}

// enumText is an enum value in CLI form, "" for unspecified.
func enumText(v protoreflect.Enum) string {
	if v.Number() == 0 {
		return ""
	}
	ed := v.Descriptor()
	ev := ed.Values().ByNumber(v.Number())
	if ev == nil {
		return fmt.Sprint(v.Number())
	}
	return cliName(ed, string(ev.Name()))
}

// parseTime accepts RFC 3339 ("2026-11-28T08:00:00Z"), a local
// "2006-01-02 15:04[:05]", "now", or an offset from now such as "-10m".
func parseTime(flagName, s string, now time.Time) (*timestamppb.Timestamp, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if s == "now" {
		return timestamppb.New(now), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return timestamppb.New(now.Add(d)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return timestamppb.New(t), nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, usagef("--%s: %q is not a time (RFC 3339 like 2026-11-28T08:00:00Z, \"now\", or an offset like -10m)", flagName, s)
}

// fmtTime prints a timestamp in UTC, "" when unset.
func fmtTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

func fmtNum(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// caseArg is the case id from --case or the single positional argument.
func caseArg(flagVal string, args []string) (string, error) {
	switch {
	case len(args) > 1:
		return "", usagef("unexpected arguments %q", args[1:])
	case len(args) == 1 && flagVal != "" && flagVal != args[0]:
		return "", usagef("two case ids: --case %s and %s", flagVal, args[0])
	case len(args) == 1:
		return args[0], nil
	case flagVal != "":
		return flagVal, nil
	}
	return "", usagef("which case? give its id as an argument or with --case")
}

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	return nil
}

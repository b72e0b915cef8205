package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// setting is one value for one option and where it came from.
type setting struct {
	opt    *option
	value  string
	source string // "flag", "env EDGENODE_X", "FILE:LINE"
}

// Load builds the configuration from command-line arguments (without the
// program name and subcommand), the environment read through getenv (nil
// means none) and the config file, over Defaults, and validates it.
//
// Errors name the flag and where its value came from. -h or --help gives an
// error wrapping flag.ErrHelp, for the caller to print Usage.
func Load(args []string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	flags, err := parseArgs(args)
	if err != nil {
		return Config{}, err
	}
	var env []setting
	for _, o := range options {
		name := EnvName(o.name)
		if v := getenv(name); v != "" {
			env = append(env, setting{opt: o, value: v, source: "env " + name})
		}
	}

	// The file is named by the strongest source that names one.
	var file []setting
	path := ""
	for _, s := range append(env, flags...) {
		if s.opt.name == "config" {
			path = s.value
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: --config: %w", err)
		}
		if file, err = parseFile(path, data); err != nil {
			return Config{}, err
		}
	}

	c := Defaults()
	from := map[string]string{} // option name → source of its value
	var errs []error
	for _, layer := range [][]setting{file, env, flags} {
		for _, s := range layer {
			if err := s.opt.set(&c, s.value); err != nil {
				errs = append(errs, fmt.Errorf("config: --%s (%s): %w", s.opt.name, s.source, err))
				continue
			}
			from[s.opt.name] = s.source
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	for _, p := range c.problems() {
		if s, ok := from[p.name]; ok {
			errs = append(errs, fmt.Errorf("config: --%s (%s): %s", p.name, s, p.msg))
		} else {
			errs = append(errs, p.err())
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// SecretFlags names the secret options (--cluster-secret, --jwt-secret, ...)
// that args give on the command line, where other local users can read
// them (/proc/PID/cmdline, ps) and so can /debug/pprof/cmdline. The
// environment or the config file keeps them out of sight.
func SecretFlags(args []string) []string {
	settings, err := parseArgs(args)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range settings {
		if s.opt.secret && s.value != "" {
			out = append(out, "--"+s.opt.name)
		}
	}
	return out
}

// parseArgs reads --name value, --name=value (one dash works too) and "--"
// ending the flags; a switch (--dev) alone means --dev=true. A list flag
// given twice accumulates; for any other the last wins.
func parseArgs(args []string) ([]setting, error) {
	var out []setting
	lists := map[string]int{} // list option name → index in out
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			if i+1 < len(args) {
				return nil, fmt.Errorf("config: unexpected argument %q", args[i+1])
			}
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			return nil, fmt.Errorf("config: unexpected argument %q (flags look like --name value)", arg)
		}
		name := strings.TrimPrefix(arg[1:], "-")
		value, hasValue := "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, value, hasValue = name[:j], name[j+1:], true
		}
		if name == "h" || name == "help" {
			return nil, fmt.Errorf("config: %w", flag.ErrHelp)
		}
		o, ok := optionByName[name]
		if !ok {
			return nil, fmt.Errorf("config: unknown flag --%s", name)
		}
		if !hasValue && o.flag {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("config: flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if k, ok := lists[name]; ok {
			out[k].value += "," + value
			continue
		}
		if o.list {
			lists[name] = len(out)
		}
		out = append(out, setting{opt: o, value: value, source: "flag"})
	}
	return out, nil
}

// parseFile reads the config file format described in the package comment.
func parseFile(path string, data []byte) ([]setting, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var out []setting
	seen := map[string]int{}
	for n, line := range strings.Split(string(data), "\n") {
		n++
		line = strings.TrimSuffix(line, "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed == "---" {
			continue
		}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("config: %s:%d: %s", path, n, fmt.Sprintf(format, a...))
		}
		if trimmed != line && (line[0] == ' ' || line[0] == '\t') {
			return nil, fail("indented line: nested settings are not supported, write name: value at the start of the line")
		}
		sep := strings.IndexAny(line, ":=")
		if sep < 0 {
			return nil, fail("expected name: value or name = value")
		}
		key := strings.TrimSpace(line[:sep])
		o, ok := optionByName[key]
		switch {
		case ok && key == "config":
			return nil, fail("config cannot be set inside a config file")
		case ok:
		case strings.HasPrefix(key, "-") && optionByName[strings.TrimLeft(key, "-")] != nil:
			return nil, fail("write %q without leading dashes", key)
		case optionByName[strings.ReplaceAll(key, "_", "-")] != nil:
			return nil, fail("unknown setting %q (did you mean %q?)", key, strings.ReplaceAll(key, "_", "-"))
		default:
			return nil, fail("unknown setting %q", key)
		}
		if first, dup := seen[key]; dup {
			return nil, fail("%s is already set on line %d", key, first)
		}
		seen[key] = n
		value, err := fileValue(line[sep+1:])
		if err != nil {
			return nil, fail("%s: %v", key, err)
		}
		out = append(out, setting{opt: o, value: value, source: fmt.Sprintf("%s:%d", path, n)})
	}
	return out, nil
}

// fileValue unquotes a value and strips a trailing comment.
func fileValue(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	var value, rest string
	switch s[0] {
	case '"':
		end := 1
		for ; end < len(s); end++ {
			if s[end] == '\\' {
				end++
			} else if s[end] == '"' {
				break
			}
		}
		if end >= len(s) {
			return "", errors.New("unterminated double quote")
		}
		v, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return "", fmt.Errorf("bad quoted value %s: %v", s[:end+1], err)
		}
		value, rest = v, s[end+1:]
	case '\'':
		// YAML single quotes: literal, '' is one quote.
		var b strings.Builder
		end := 1
		for ; end < len(s); end++ {
			if s[end] == '\'' {
				if end+1 < len(s) && s[end+1] == '\'' {
					b.WriteByte('\'')
					end++
					continue
				}
				break
			}
			b.WriteByte(s[end])
		}
		if end >= len(s) {
			return "", errors.New("unterminated single quote")
		}
		value, rest = b.String(), s[end+1:]
	case '#':
		return "", nil
	case '|', '>':
		return "", errors.New("block scalars (| and >) are not supported; quote the value")
	default:
		value = s
		for i := 1; i < len(s); i++ {
			if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') {
				value = strings.TrimSpace(s[:i])
				break
			}
		}
		return value, nil
	}
	rest = strings.TrimSpace(rest)
	if rest != "" && rest[0] != '#' {
		return "", fmt.Errorf("unexpected %q after the quoted value", rest)
	}
	return value, nil
}

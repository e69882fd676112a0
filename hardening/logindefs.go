package hardening

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const loginDefs = "/etc/login.defs"

// loginDefsValue returns the value shadow's getdef would use for key: the
// last active definition in the file.
func loginDefsValue(data []byte, key string) (string, string, bool) {
	var val, line string
	found := false
	for _, raw := range strings.Split(string(data), "\n") {
		f := strings.Fields(raw)
		if len(f) >= 2 && f[0] == key {
			val, line, found = f[1], strings.TrimSpace(raw), true
		}
	}
	return val, line, found
}

// setLoginDefs makes key appear exactly once with value: the first active
// definition is rewritten, later ones are removed, and a missing key is
// appended. Comments and the rest of Debian's file stay as they were.
func setLoginDefs(data []byte, key, value string) []byte {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	out := make([]string, 0, len(lines)+1)
	done := false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 1 && f[0] == key {
			if done {
				continue
			}
			out = append(out, key+"\t"+value)
			done = true
			continue
		}
		out = append(out, l)
	}
	if !done {
		out = append(out, key+"\t"+value)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// loginDefsControl sets key to value and accepts any value for which ok is
// true (an administrator may be stricter than we are).
func loginDefsControl(key, value, title, rule string, ok func(string) bool, profiles []config.Profile, r ...Reference) Control {
	return Control{
		ID:         "login-defs." + strings.ToLower(key),
		Title:      title,
		References: r,
		Profiles:   profiles,
		applies: func(e *env) (bool, string) {
			if !e.exists(loginDefs) {
				return false, loginDefs + " does not exist under the root"
			}
			return true, ""
		},
		apply: func(e *env) ([]string, error) {
			data, _, err := e.read(loginDefs)
			if err != nil {
				return nil, err
			}
			if v, _, found := loginDefsValue(data, key); found && ok(v) {
				return nil, nil
			}
			wrote, err := e.writeFile(loginDefs, setLoginDefs(data, key, value), 0o644)
			if err != nil || !wrote {
				return nil, err
			}
			return []string{loginDefs}, nil
		},
		check: func(e *env) outcome {
			o := outcome{expected: key + " " + rule}
			data, exists, err := e.read(loginDefs)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			v, line, found := loginDefsValue(data, key)
			o.evidence = []Evidence{fileEvidence(loginDefs, data, exists, line)}
			switch {
			case !found:
				o.result, o.actual = Fail, key+" is not set"
			case !ok(v):
				o.result, o.actual = Fail, key+" "+v
			default:
				o.result, o.actual = Pass, key+" "+v
			}
			return o
		},
	}
}

func intAtMost(n int) func(string) bool {
	return func(s string) bool { v, err := strconv.Atoi(s); return err == nil && v > 0 && v <= n }
}

func intAtLeast(n int) func(string) bool {
	return func(s string) bool { v, err := strconv.Atoi(s); return err == nil && v >= n }
}

func equalFold(want string) func(string) bool {
	return func(s string) bool { return strings.EqualFold(s, want) }
}

// umaskAtLeast accepts an octal umask that masks at least the bits of want.
func umaskAtLeast(want uint64) func(string) bool {
	return func(s string) bool {
		v, err := strconv.ParseUint(s, 8, 32)
		return err == nil && v&want == want
	}
}

func describeUmask(want uint64) string { return fmt.Sprintf("masking at least %03o", want) }

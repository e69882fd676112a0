package hardening

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/omertaos/omertaos/appliance/config"
)

const (
	journaldFile = "/etc/systemd/journald.conf.d/60-omerta-hardening.conf"
	coredumpFile = "/etc/systemd/coredump.conf.d/60-omerta-hardening.conf"
	systemFile   = "/etc/systemd/system.conf.d/60-omerta-hardening.conf"
	limitsFile   = "/etc/security/limits.d/60-omerta-hardening.conf"
	profileFile  = "/etc/profile.d/60-omerta-hardening.sh"
)

var systemdConfDirs = []string{"/etc", "/run", "/usr/local/lib", "/usr/lib"}

// systemdSetting computes the value systemd uses for section.key of a
// configuration such as "systemd/journald.conf": the first main file found
// in /etc, /run, /usr/local/lib, /usr/lib, then the .d drop-ins of all of
// them sorted by name (a name in an earlier directory hides later ones),
// the last assignment winning.
func (e *env) systemdSetting(name, section, key string) (value, file, line string, found bool, ev []Evidence, err error) {
	var files []string
	for _, d := range systemdConfDirs {
		if p := path.Join(d, name); e.exists(p) {
			files = append(files, p)
			break
		}
	}
	dirs := make([]string, len(systemdConfDirs))
	for i, d := range systemdConfDirs {
		dirs[i] = path.Join(d, name+".d")
	}
	dropIns, _, err := e.dropIns(dirs)
	if err != nil {
		return "", "", "", false, nil, err
	}
	files = append(files, dropIns...)
	for _, f := range files {
		data, ok, rerr := e.read(f)
		if rerr != nil {
			return "", "", "", false, nil, rerr
		}
		if !ok {
			continue
		}
		v, hit, perr := lastAssignment(data, section, key)
		if perr != nil {
			return "", "", "", false, nil, fmt.Errorf("parsing %s: %w", f, perr)
		}
		if hit {
			value, file, line, found = v, f, key+"="+v, true
			ev = append(ev, fileEvidence(f, data, true, line))
		}
	}
	return value, file, line, found, ev, nil
}

// lastAssignment returns the last value of section.key in a systemd
// configuration file, parsed as systemd does (go-systemd's unit lexer:
// comments, continuation lines, repeated sections). A file systemd would
// only partly understand is an error: the check cannot say what it sets.
func lastAssignment(data []byte, section, key string) (string, bool, error) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return "", false, err
	}
	value, found := "", false
	for _, o := range opts {
		if o.Section == section && o.Name == key {
			value, found = strings.TrimSpace(o.Value), true
		}
	}
	return value, found, nil
}

// systemdConfControl sets section.key=value in an owned drop-in of the
// systemd configuration name and reads back the effective value.
func systemdConfControl(id, title, owned, name, section, key, value string, profiles []config.Profile, r ...Reference) Control {
	return Control{
		ID:         id,
		Title:      title,
		References: r,
		Profiles:   profiles,
		owned:      func(*env) (string, []string) { return owned, []string{key + "=" + value} },
		check: func(e *env) outcome {
			o := outcome{expected: "[" + section + "] " + key + "=" + value}
			v, file, _, found, ev, err := e.systemdSetting(name, section, key)
			o.evidence = ev
			switch {
			case err != nil:
				o.result, o.actual = Error, err.Error()
			case !found:
				o.result, o.actual = Fail, key+" is not set (systemd's default applies)"
			case !strings.EqualFold(v, value):
				o.result, o.actual = Fail, fmt.Sprintf("%s=%s (from %s)", key, v, file)
			default:
				o.result, o.actual = Pass, fmt.Sprintf("%s=%s (from %s)", key, v, file)
			}
			return o
		},
	}
}

// limitsCore returns the effective hard core limit for all users ("*")
// from limits.conf and limits.d, the last entry winning.
func (e *env) limitsCore() (string, string, []Evidence, error) {
	files := []string{"/etc/security/limits.conf"}
	entries, err := e.readDir("/etc/security/limits.d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", nil, fmt.Errorf("listing /etc/security/limits.d: %w", err)
	}
	for _, de := range entries {
		if strings.HasSuffix(de.Name(), ".conf") {
			files = append(files, "/etc/security/limits.d/"+de.Name())
		}
	}
	var val, from string
	var ev []Evidence
	for _, f := range files {
		data, ok, err := e.read(f)
		if err != nil {
			return "", "", nil, err
		}
		if !ok {
			continue
		}
		for _, raw := range strings.Split(string(data), "\n") {
			fl := strings.Fields(raw)
			if len(fl) >= 4 && fl[0] == "*" && (fl[1] == "hard" || fl[1] == "-") && fl[2] == "core" {
				val, from = fl[3], f
				ev = append(ev, fileEvidence(f, data, true, strings.TrimSpace(raw)))
			}
		}
	}
	return val, from, ev, nil
}

func coreLimitControl() Control {
	return Control{
		ID:         "coredump.limits",
		Title:      "Core dumps are limited to zero bytes for every login session",
		References: refs(cis("1.5.4"), srg("SRG-OS-000480-GPOS-00227")),
		Profiles:   all,
		owned:      func(*env) (string, []string) { return limitsFile, []string{"*\thard\tcore\t0"} },
		check: func(e *env) outcome {
			o := outcome{expected: "* hard core 0"}
			v, from, ev, err := e.limitsCore()
			o.evidence = ev
			switch {
			case err != nil:
				o.result, o.actual = Error, err.Error()
			case v == "":
				o.result, o.actual = Fail, "no hard core limit for *"
			case v != "0":
				o.result, o.actual = Fail, "* hard core "+v+" ("+from+")"
			default:
				o.result, o.actual = Pass, "* hard core 0 ("+from+")"
			}
			return o
		},
	}
}

// ownedLinesControl writes lines into an owned file and checks that the
// file holds every one of them.
func ownedLinesControl(id, title, file string, lines []string, profiles []config.Profile, r ...Reference) Control {
	return Control{
		ID:         id,
		Title:      title,
		References: r,
		Profiles:   profiles,
		owned:      func(*env) (string, []string) { return file, lines },
		check: func(e *env) outcome {
			return checkLines(e, file, lines)
		},
	}
}

func checkLines(e *env, file string, lines []string) outcome {
	o := outcome{expected: strings.Join(lines, "; ")}
	data, exists, err := e.read(file)
	if err != nil {
		o.result, o.actual = Error, err.Error()
		return o
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		have[strings.Join(strings.Fields(l), " ")] = true
	}
	var missing []string
	for _, l := range lines {
		if !have[strings.Join(strings.Fields(l), " ")] {
			missing = append(missing, l)
		}
	}
	o.evidence = []Evidence{fileEvidence(file, data, exists, "")}
	switch {
	case !exists:
		o.result, o.actual = Fail, file+" does not exist"
	case len(missing) > 0:
		o.result, o.actual = Fail, "missing: "+strings.Join(missing, "; ")
	default:
		o.result, o.actual = Pass, fmt.Sprintf("all %d lines present in %s", len(lines), file)
	}
	return o
}

// dropIns lists the *.conf files of dirs the way systemd and kmod order
// them: a file name in an earlier directory hides the same name in later
// ones, and the survivors are sorted by name. It also returns, by name,
// where each survivor lives.
func (e *env) dropIns(dirs []string) ([]string, map[string]string, error) {
	byName := map[string]string{}
	for _, d := range dirs {
		entries, err := e.readDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("listing %s: %w", d, err)
		}
		for _, de := range entries {
			if !strings.HasSuffix(de.Name(), ".conf") {
				continue
			}
			if _, ok := byName[de.Name()]; !ok {
				byName[de.Name()] = path.Join(d, de.Name())
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	files := make([]string, len(names))
	for i, n := range names {
		files[i] = byName[n]
	}
	return files, byName, nil
}

package hardening

import (
	"fmt"
	"slices"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const (
	fstabFile   = "/etc/fstab"
	fstabBegin  = "# BEGIN omerta-hardening: managed by omerta harden"
	fstabEnd    = "# END omerta-hardening"
	mountinfo   = "/proc/self/mountinfo"
	fstabHeader = "# /etc/fstab: static file system information (see fstab(5)).\n"
)

// mountDefaults is the fstab line added for a mount point that the image
// did not list. /tmp and /dev/shm are tmpfs already (systemd mounts them);
// listing them here makes systemd apply the options. /var/tmp lives on the
// separate /var partition, so it is bound onto itself with the options.
var mountDefaults = map[string][]string{
	"/tmp":     {"tmpfs", "/tmp", "tmpfs", "mode=1777,strictatime,size=50%,nr_inodes=1m"},
	"/dev/shm": {"tmpfs", "/dev/shm", "tmpfs", "defaults"},
	"/var/tmp": {"/var/tmp", "/var/tmp", "none", "bind"},
}

type fstabEntry struct {
	line    int // index in lines
	fields  []string
	inBlock bool
}

func parseFstab(data []byte) (lines []string, entries []fstabEntry) {
	text := strings.TrimSuffix(string(data), "\n")
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	in := false
	for i, l := range lines {
		t := strings.TrimSpace(l)
		switch t {
		case fstabBegin:
			in = true
			continue
		case fstabEnd:
			in = false
			continue
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Fields(t)
		if len(f) < 4 {
			continue
		}
		entries = append(entries, fstabEntry{line: i, fields: f, inBlock: in})
	}
	return lines, entries
}

// fstabOptions returns the options of the last active fstab entry for mp
// (the one systemd and mount(8) use) and the line itself.
func fstabOptions(data []byte, mp string) ([]string, string, bool) {
	lines, entries := parseFstab(data)
	for i := len(entries) - 1; i >= 0; i-- {
		if f := entries[i].fields; unescapeMount(f[1]) == mp {
			return strings.Split(f[3], ","), strings.TrimSpace(lines[entries[i].line]), true
		}
	}
	return nil, "", false
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// ensureMountOption makes the fstab entry for mp carry opt. An entry the
// image wrote is edited in place; otherwise a line is added inside our
// marked block, so that the rest of fstab stays the image's.
func ensureMountOption(e *env, mp, opt string) ([]string, error) {
	data, exists, err := e.read(fstabFile)
	if err != nil {
		return nil, err
	}
	if !exists {
		data = []byte(fstabHeader)
	}
	lines, entries := parseFstab(data)
	var target *fstabEntry
	for i := range entries {
		if unescapeMount(entries[i].fields[1]) == mp {
			target = &entries[i]
		}
	}
	if target != nil {
		opts := strings.Split(target.fields[3], ",")
		if slices.Contains(opts, opt) {
			return nil, nil
		}
		// "dev", "suid" or "exec" would undo the option; mount(8) uses the last.
		opts = slices.DeleteFunc(opts, func(o string) bool { return o == strings.TrimPrefix(opt, "no") })
		target.fields[3] = strings.Join(append(opts, opt), ",")
		f := target.fields
		for len(f) < 6 {
			f = append(f, "0")
		}
		lines[target.line] = strings.Join(f, " ")
	} else {
		d := mountDefaults[mp]
		block := []string{strings.Join([]string{d[0], d[1], d[2], d[3] + "," + opt, "0", "0"}, " ")}
		// Drop the old block and re-add it with the new line at the end.
		var kept, old []string
		in := false
		for _, l := range lines {
			switch strings.TrimSpace(l) {
			case fstabBegin:
				in = true
				continue
			case fstabEnd:
				in = false
				continue
			}
			if in {
				old = append(old, l)
			} else {
				kept = append(kept, l)
			}
		}
		lines = append(kept, fstabBegin)
		lines = append(lines, old...)
		lines = append(lines, block...)
		lines = append(lines, fstabEnd)
	}
	out := []byte(strings.Join(lines, "\n") + "\n")
	wrote, err := e.writeFile(fstabFile, out, 0o644)
	if err != nil || !wrote {
		return nil, err
	}
	return []string{fstabFile}, nil
}

// mountinfoOptions returns the per-mount options of the topmost mount at mp.
func mountinfoOptions(data []byte, mp string) ([]string, string, bool) {
	var opts []string
	var line string
	found := false
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || unescapeMount(f[4]) != mp {
			continue
		}
		opts, line, found = strings.Split(f[5], ","), l, true
	}
	return opts, line, found
}

func mountControl(mp, opt, cisID string, profiles []config.Profile) Control {
	id := "fs." + strings.ReplaceAll(strings.Trim(mp, "/"), "/", "-") + "." + opt
	what := map[string]string{
		"nodev":  "device files cannot be created",
		"nosuid": "set-user-ID bits are ignored",
		"noexec": "programs cannot be executed",
	}[opt]
	return Control{
		ID:         id,
		Title:      fmt.Sprintf("%s is mounted %s (%s)", mp, opt, what),
		References: refs(cis(cisID), srg("SRG-OS-000368-GPOS-00154")),
		Profiles:   profiles,
		apply: func(e *env) ([]string, error) {
			return ensureMountOption(e, mp, opt)
		},
		live: func(e *env) error {
			data, _, err := e.read(mountinfo)
			if err != nil {
				return err
			}
			opts, _, mounted := mountinfoOptions(data, mp)
			if mounted && slices.Contains(opts, opt) {
				return nil
			}
			args := []string{mp}
			if mounted {
				args = []string{"-o", "remount," + opt, mp}
			}
			if out, err := e.opts.Runner(e.ctx, "mount", args...); err != nil {
				return fmt.Errorf("mount %s: %s: %w", strings.Join(args, " "), strings.TrimSpace(string(out)), err)
			}
			delete(e.cache, mountinfo)
			return nil
		},
		check: func(e *env) outcome {
			o := outcome{expected: mp + " mounted with " + opt}
			data, exists, err := e.read(fstabFile)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			opts, line, ok := fstabOptions(data, mp)
			o.evidence = append(o.evidence, fileEvidence(fstabFile, data, exists, line))
			switch {
			case !ok:
				o.result, o.actual = Fail, "no "+mp+" entry in /etc/fstab"
				return o
			case !slices.Contains(opts, opt):
				o.result, o.actual = Fail, "fstab options "+strings.Join(opts, ",")
				return o
			}
			o.result, o.actual = Pass, "fstab options "+strings.Join(opts, ",")
			if !e.opts.Live {
				return o
			}
			mi, _, err := e.read(mountinfo)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			lopts, lline, mounted := mountinfoOptions(mi, mp)
			o.evidence = append(o.evidence, fileEvidence(mountinfo, mi, true, lline))
			switch {
			case !mounted:
				o.result, o.actual = Fail, "in fstab but not mounted"
			case !slices.Contains(lopts, opt):
				o.result, o.actual = Fail, "mounted with "+strings.Join(lopts, ",")
			default:
				o.actual = "mounted with " + strings.Join(lopts, ",")
			}
			return o
		},
	}
}

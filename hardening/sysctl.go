package hardening

import (
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

// sysctlFile sorts after Debian's /usr/lib/sysctl.d/99-protect-links.conf,
// which sets fs.protected_fifos=1 and would override a lower-numbered file
// (the read-back found it). An administrator overrides us with a later name.
const sysctlFile = "/etc/sysctl.d/99-zz-omerta-hardening.conf"

// sysctlDirs are searched in this order; a file name found in an earlier
// directory hides the same name in later ones (systemd-sysctl semantics).
var sysctlDirs = []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}

// sysctlSetting is where a key's effective value came from.
type sysctlSetting struct {
	Value string
	File  string
	Line  string
}

// parseSysctl parses one sysctl.d file into key -> value, in file order.
// Keys are normalised to the dotted form; values have their whitespace
// collapsed, as the kernel prints them.
func parseSysctl(data []byte) [][2]string {
	var out [][2]string
	for _, raw := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		k = strings.TrimPrefix(strings.TrimSpace(k), "-")
		out = append(out, [2]string{normaliseSysctlKey(k), strings.Join(strings.Fields(v), " ")})
	}
	return out
}

// normaliseSysctlKey turns "net/ipv4/conf/eth0.1/rp_filter" into the dotted
// form; with '/' separators a '.' is part of a name, so the two swap.
func normaliseSysctlKey(k string) string {
	k = strings.TrimSpace(k)
	if i := strings.IndexAny(k, "./"); i >= 0 && k[i] == '/' {
		return strings.Map(func(r rune) rune {
			switch r {
			case '/':
				return '.'
			case '.':
				return '/'
			}
			return r
		}, k)
	}
	return k
}

// sysctlConfig computes the effective configured value of every key the way
// systemd-sysctl does at boot, and returns the files it read as evidence.
func (e *env) sysctlConfig() (map[string]sysctlSetting, []Evidence, error) {
	files, byName, err := e.dropIns(sysctlDirs)
	if err != nil {
		return nil, nil, err
	}
	// procps reads /etc/sysctl.conf last; Debian links it in as 99-sysctl.conf.
	if _, ok := byName["99-sysctl.conf"]; !ok {
		files = append(files, "/etc/sysctl.conf")
	}
	eff := map[string]sysctlSetting{}
	var ev []Evidence
	for _, f := range files {
		data, ok, err := e.read(f)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		ev = append(ev, fileEvidence(f, data, true, ""))
		for _, kv := range parseSysctl(data) {
			eff[kv[0]] = sysctlSetting{Value: kv[1], File: f, Line: kv[0] + " = " + kv[1]}
		}
	}
	return eff, ev, nil
}

func procSysPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// sysctlControl builds a control that sets key to want(profile) in the
// owned sysctl.d file and, live, in /proc/sys.
func sysctlControl(key, title string, want func(config.Profile) string, profiles []config.Profile, r ...Reference) Control {
	return Control{
		ID:         "sysctl." + key,
		Title:      title,
		References: r,
		Profiles:   profiles,
		owned: func(e *env) (string, []string) {
			return sysctlFile, []string{key + " = " + want(e.profile())}
		},
		live: func(e *env) error {
			p := procSysPath(key)
			cur, ok, err := e.read(p)
			if err != nil || !ok {
				return err // an absent key is reported by the check
			}
			w := want(e.profile())
			if strings.Join(strings.Fields(string(cur)), " ") == w {
				return nil
			}
			if err := e.fs.WriteExisting(p, []byte(w+"\n")); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			delete(e.cache, p)
			return nil
		},
		check: func(e *env) outcome {
			return checkSysctl(e, key, want(e.profile()))
		},
	}
}

func checkSysctl(e *env, key, want string) outcome {
	o := outcome{expected: key + " = " + want}
	eff, ev, err := e.sysctlConfig()
	if err != nil {
		o.result, o.actual = Error, err.Error()
		return o
	}
	s, ok := eff[key]
	// Only the file that decides the value is evidence; listing every
	// sysctl.d file on each control would drown the report.
	for _, x := range ev {
		if ok && x.Source == s.File {
			x.Excerpt = s.Line
			o.evidence = append(o.evidence, x)
		}
	}
	switch {
	case !ok:
		o.result, o.actual = Fail, "not configured in any sysctl.d file"
		o.evidence = append(o.evidence, Evidence{Source: sysctlFile, Excerpt: "(no setting for " + key + ")"})
		return o
	case s.Value != want:
		o.result, o.actual = Fail, fmt.Sprintf("%s (set by %s)", s.Value, s.File)
		return o
	}
	o.result, o.actual = Pass, fmt.Sprintf("%s (set by %s)", s.Value, s.File)
	if !e.opts.Live {
		return o
	}
	p := procSysPath(key)
	data, exists, err := e.read(p)
	if err != nil {
		o.result, o.actual = Error, err.Error()
		return o
	}
	if !exists {
		o.evidence = append(o.evidence, fileEvidence(p, nil, false, ""))
		o.result, o.actual = NotApplicable, "the running kernel has no "+key
		return o
	}
	live := strings.Join(strings.Fields(string(data)), " ")
	o.evidence = append(o.evidence, fileEvidence(p, data, true, live))
	if live != want {
		o.result, o.actual = Fail, fmt.Sprintf("configured %s but the running kernel has %s", s.Value, live)
		return o
	}
	o.actual = live + " (configured and running)"
	return o
}

func fixed(v string) func(config.Profile) string { return func(config.Profile) string { return v } }

// sysctlWaiver reports a key that CIS wants but this appliance cannot have,
// with its current value, without writing anything.
func sysctlWaiver(key, title, cisWant, waiver string, r ...Reference) Control {
	return Control{
		ID:         "sysctl." + key,
		Title:      title,
		References: r,
		Profiles:   all,
		Waiver:     waiver,
		check: func(e *env) outcome {
			o := checkSysctl(e, key, cisWant)
			o.expected = key + " = " + cisWant + " (CIS; waived)"
			return o
		},
	}
}

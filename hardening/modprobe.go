package hardening

import (
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const modprobeFile = "/etc/modprobe.d/omerta-hardening.conf"

var modprobeDirs = []string{"/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"}

// modName is the kernel's name for a module: '-' and '_' are the same to
// modprobe, and /proc/modules prints '_'.
func modName(m string) string { return strings.ReplaceAll(m, "-", "_") }

// modprobeState is what the modprobe configuration says about a module.
type modprobeState struct {
	Install     string // command of the first "install" line, as kmod uses it
	InstallFile string
	Blacklisted bool
}

// modprobeConfig reads every modprobe.d file in the order kmod does and
// returns the state of each module, plus the files read.
func (e *env) modprobeConfig() (map[string]*modprobeState, []Evidence, error) {
	files, _, err := e.dropIns(modprobeDirs)
	if err != nil {
		return nil, nil, err
	}
	st := map[string]*modprobeState{}
	get := func(m string) *modprobeState {
		m = modName(m)
		if st[m] == nil {
			st[m] = &modprobeState{}
		}
		return st[m]
	}
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
		for _, raw := range strings.Split(string(data), "\n") {
			fields := strings.Fields(raw)
			if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			switch fields[0] {
			case "blacklist":
				get(fields[1]).Blacklisted = true
			case "install":
				s := get(fields[1])
				if s.Install == "" && len(fields) > 2 {
					s.Install = strings.Join(fields[2:], " ")
					s.InstallFile = f
				}
			}
		}
	}
	return st, ev, nil
}

// moduleControl keeps module m from loading: "install m /bin/false" stops
// explicit loads, "blacklist m" stops loads by alias.
func moduleControl(m, what string, profiles []config.Profile, r ...Reference) Control {
	return Control{
		ID:         "kmod." + m,
		Title:      "Loading of the " + what + " module " + m + " is disabled",
		References: r,
		Profiles:   profiles,
		owned: func(e *env) (string, []string) {
			return modprobeFile, []string{"install " + m + " /bin/false", "blacklist " + m}
		},
		live: func(e *env) error {
			loaded, err := e.moduleLoaded(m)
			if err != nil || !loaded {
				return err
			}
			// A module in use (a mounted udf disc, a USB disk) stays; the
			// check then reports it as loaded rather than failing the apply.
			_, _ = e.opts.Runner(e.ctx, "modprobe", "-r", m)
			delete(e.cache, "/proc/modules")
			return nil
		},
		check: func(e *env) outcome {
			o := outcome{expected: "install " + m + " /bin/false; blacklist " + m}
			st, ev, err := e.modprobeConfig()
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			s := st[modName(m)]
			if s == nil {
				s = &modprobeState{}
			}
			for _, x := range ev {
				if x.Source == s.InstallFile || x.Source == modprobeFile {
					x.Excerpt = "install " + m + " " + s.Install
					o.evidence = append(o.evidence, x)
				}
			}
			disabled := s.Install == "/bin/false" || s.Install == "/bin/true" || s.Install == "/usr/bin/false" || s.Install == "/usr/bin/true"
			switch {
			case !disabled && s.Install == "":
				o.result, o.actual = Fail, "no install line: the module can be loaded"
			case !disabled:
				o.result, o.actual = Fail, fmt.Sprintf("install %s %s (in %s) loads it", m, s.Install, s.InstallFile)
			case !s.Blacklisted:
				o.result, o.actual = Fail, "install is blocked but the module is not blacklisted"
			default:
				o.result, o.actual = Pass, "install "+m+" "+s.Install+"; blacklisted"
			}
			if o.result != Pass || !e.opts.Live {
				return o
			}
			data, _, _ := e.read("/proc/modules")
			loaded, err := e.moduleLoaded(m)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			o.evidence = append(o.evidence, fileEvidence("/proc/modules", data, true, ""))
			if loaded {
				o.result, o.actual = Fail, "configured off but loaded in the running kernel"
			} else {
				o.actual += "; not loaded"
			}
			return o
		},
	}
}

func (e *env) moduleLoaded(m string) (bool, error) {
	data, ok, err := e.read("/proc/modules")
	if err != nil || !ok {
		return false, err
	}
	want := modName(m)
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == want {
			return true, nil
		}
	}
	return false, nil
}

// moduleWaiver reports a module that CIS wants disabled but the appliance
// needs, with whether it is loadable now.
func moduleWaiver(m, title, waiver string, r ...Reference) Control {
	return Control{
		ID:         "kmod." + m,
		Title:      title,
		References: r,
		Profiles:   all,
		Waiver:     waiver,
		check: func(e *env) outcome {
			o := outcome{expected: "install " + m + " /bin/false (CIS; waived)"}
			st, _, err := e.modprobeConfig()
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			if s := st[modName(m)]; s != nil && s.Install != "" {
				o.actual = "install " + m + " " + s.Install + " (" + s.InstallFile + ")"
			} else {
				o.actual = "loadable (no install line)"
			}
			o.result = Informational
			return o
		},
	}
}

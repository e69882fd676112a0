package hardening

import (
	"fmt"
	"path"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const (
	sshdBinary = "/usr/sbin/sshd"
	sshdConfig = "/etc/ssh/sshd_config"
	sshdFile   = "/etc/ssh/sshd_config.d/50-omerta.conf"
)

// sshdMulti are keywords whose values accumulate instead of first-wins.
var sshdMulti = map[string]bool{"allowusers": true, "allowgroups": true, "denyusers": true, "denygroups": true}

// sshdMaxFiles bounds the files one reading of sshd_config parses: Include
// globs that include each other would otherwise fan out exponentially
// within the nesting limit.
const sshdMaxFiles = 256

// sshdEffective reads sshd_config the way sshd does for the global
// section: keywords are case-insensitive, the first value wins, Include
// globs are expanded in lexical order (relative to /etc/ssh), and Match
// blocks are skipped.
func (e *env) sshdEffective() (map[string]string, map[string]string, []Evidence, error) {
	vals := map[string]string{}
	from := map[string]string{}
	var ev []Evidence
	parsed := 0
	var parse func(file string, depth int) error
	parse = func(file string, depth int) error {
		if depth > 16 {
			return fmt.Errorf("sshd Include nesting too deep at %s", file)
		}
		if parsed++; parsed > sshdMaxFiles {
			return fmt.Errorf("sshd Include reaches more than %d files (at %s)", sshdMaxFiles, file)
		}
		data, ok, err := e.read(file)
		if err != nil || !ok {
			return err
		}
		ev = append(ev, fileEvidence(file, data, true, ""))
		inMatch := false
		for _, raw := range strings.Split(string(data), "\n") {
			l := strings.TrimSpace(raw)
			if l == "" || l[0] == '#' {
				continue
			}
			kw, rest, _ := strings.Cut(strings.Replace(l, "=", " ", 1), " ")
			kw = strings.ToLower(strings.TrimSpace(kw))
			rest = strings.Join(strings.Fields(rest), " ")
			switch {
			case kw == "match":
				inMatch = true
				continue
			case inMatch:
				continue
			case kw == "include":
				for _, pat := range strings.Fields(rest) {
					if !path.IsAbs(pat) {
						pat = path.Join("/etc/ssh", pat)
					}
					matches, err := e.fs.Glob(pat)
					if err != nil {
						return fmt.Errorf("sshd Include %q: %w", pat, err)
					}
					for _, m := range matches {
						if err := parse(m, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			if sshdMulti[kw] {
				vals[kw] = strings.TrimSpace(vals[kw] + " " + rest)
				from[kw] = file
				continue
			}
			if _, set := vals[kw]; !set {
				vals[kw], from[kw] = rest, file
			}
		}
		return nil
	}
	err := parse(sshdConfig, 0)
	return vals, from, ev, err
}

// sshdControl sets one sshd keyword in the owned drop-in. Live, the value
// is read from `sshd -T`, which prints what the daemon would really use.
func sshdControl(key, value, title string, profiles []config.Profile, r ...Reference) Control {
	lk := strings.ToLower(key)
	return Control{
		ID:         "ssh." + lk,
		Title:      title,
		References: r,
		Profiles:   profiles,
		applies: func(e *env) (bool, string) {
			if !e.exists(sshdBinary) {
				return false, "OpenSSH server is not installed (" + sshdBinary + " absent)"
			}
			return true, ""
		},
		owned: func(*env) (string, []string) { return sshdFile, []string{key + " " + value} },
		check: func(e *env) outcome {
			o := outcome{expected: key + " " + value}
			vals, from, ev, err := e.sshdEffective()
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			for _, x := range ev {
				if x.Source == from[lk] {
					x.Excerpt = key + " " + vals[lk]
					o.evidence = append(o.evidence, x)
				}
			}
			v, set := vals[lk]
			switch {
			case !set:
				o.result, o.actual = Fail, key+" is not set (sshd's default applies; is "+sshdFile+" included?)"
				return o
			case !strings.EqualFold(v, value):
				o.result, o.actual = Fail, fmt.Sprintf("%s %s (from %s)", key, v, from[lk])
				return o
			}
			o.result, o.actual = Pass, fmt.Sprintf("%s %s (from %s)", key, v, from[lk])
			if !e.opts.Live {
				return o
			}
			out, err := e.run("sshd", "-T")
			if err != nil {
				o.evidence = append(o.evidence, cmdEvidence("sshd -T", out, firstLine(out)))
				o.result, o.actual = Error, "sshd -T: "+firstLine(out)
				return o
			}
			lv := ""
			for _, l := range strings.Split(string(out), "\n") {
				if k, rest, ok := strings.Cut(strings.TrimSpace(l), " "); ok && k == lk {
					lv = strings.TrimSpace(lv + " " + rest)
				}
			}
			o.evidence = append(o.evidence, cmdEvidence("sshd -T", out, lk+" "+lv))
			if !strings.EqualFold(lv, value) {
				o.result, o.actual = Fail, "sshd -T reports "+lk+" "+lv
			}
			return o
		},
	}
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

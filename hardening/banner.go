package hardening

import (
	"fmt"
	"regexp"
	"strings"
)

const (
	issueFile    = "/etc/issue"
	issueNetFile = "/etc/issue.net"
	motdFile     = "/etc/motd"
)

// legalBanner is shown before login (console, SSH) and after it. It names
// no operating system or version, which would help an attacker.
var legalBanner = []string{
	"Authorized access only. This system is private property of its owner.",
	"All activity is monitored and logged; use of this system constitutes consent to monitoring.",
	"Unauthorized access or use is prohibited and may be prosecuted under applicable law.",
}

// osInfoRE matches agetty escapes that print the OS, kernel or machine
// (\m \r \s \v), which CIS wants off pre-login banners.
var osInfoRE = regexp.MustCompile(`\\[mrsv]`)

func osID(e *env) string {
	data, _, _ := e.read("/etc/os-release")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "ID="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// bannerProblems lists why text is not an acceptable banner.
func bannerProblems(e *env, text string) []string {
	var p []string
	for _, l := range legalBanner {
		if !strings.Contains(text, l) {
			p = append(p, "legal notice missing")
			break
		}
	}
	if osInfoRE.MatchString(text) {
		p = append(p, `shows OS information (\m, \r, \s or \v)`)
	}
	if id := osID(e); id != "" && strings.Contains(strings.ToLower(text), strings.ToLower(id)) {
		p = append(p, fmt.Sprintf("names the OS (%q)", id))
	}
	return p
}

func checkBanner(e *env, file string) outcome {
	o := outcome{expected: "legal notice, no OS information"}
	data, exists, err := e.read(file)
	if err != nil {
		o.result, o.actual = Error, err.Error()
		return o
	}
	o.evidence = []Evidence{fileEvidence(file, data, exists, firstLine(data))}
	if !exists {
		o.result, o.actual = Fail, file+" does not exist"
		return o
	}
	if p := bannerProblems(e, string(data)); len(p) > 0 {
		o.result, o.actual = Fail, strings.Join(p, "; ")
		return o
	}
	o.result, o.actual = Pass, "legal notice present, no OS information"
	return o
}

func bannerControls() []Control {
	return []Control{
		{
			ID:         "banner.issue-net",
			Title:      "The remote login banner (/etc/issue.net) carries the legal notice and no OS information",
			References: refs(cis("1.7.3"), srg("SRG-OS-000023-GPOS-00006")),
			Profiles:   all,
			owned:      func(*env) (string, []string) { return issueNetFile, legalBanner },
			check:      func(e *env) outcome { return checkBanner(e, issueNetFile) },
		},
		{
			ID:         "banner.motd",
			Title:      "The message of the day carries the legal notice and no OS information",
			References: refs(cis("1.7.1")),
			Profiles:   all,
			owned:      func(*env) (string, []string) { return motdFile, legalBanner },
			check:      func(e *env) outcome { return checkBanner(e, motdFile) },
		},
		{
			// /etc/issue is shared: first boot adds the console URL and the
			// setup token to it. The notice is put first; lines that show OS
			// information are dropped; everything else stays.
			ID:         "banner.issue",
			Title:      "The local login banner (/etc/issue) carries the legal notice and no OS information",
			References: refs(cis("1.7.2"), srg("SRG-OS-000023-GPOS-00006")),
			Profiles:   all,
			apply: func(e *env) ([]string, error) {
				data, _, err := e.read(issueFile)
				if err != nil {
					return nil, err
				}
				if len(bannerProblems(e, string(data))) == 0 {
					return nil, nil
				}
				id := strings.ToLower(osID(e))
				var keep []string
				for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
					if slicesContains(legalBanner, l) || osInfoRE.MatchString(l) || id != "" && strings.Contains(strings.ToLower(l), id) {
						continue
					}
					keep = append(keep, l)
				}
				for len(keep) > 0 && strings.TrimSpace(keep[0]) == "" {
					keep = keep[1:]
				}
				out := strings.Join(legalBanner, "\n") + "\n\n"
				if len(keep) > 0 {
					out += strings.Join(keep, "\n") + "\n"
				}
				wrote, err := e.writeFile(issueFile, []byte(out), 0o644)
				if err != nil || !wrote {
					return nil, err
				}
				return []string{issueFile}, nil
			},
			check: func(e *env) outcome { return checkBanner(e, issueFile) },
		},
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

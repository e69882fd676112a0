package main

import (
	"regexp"
	"strings"
	"time"
)

// bootProfile is where one boot's time went: systemd's own account of it
// (systemd-analyze time, blame, critical-chain) and, for the first boot,
// the serial console's milestones.
type bootProfile struct {
	// Milestones are seconds to each line from power-on (QEMU's start),
	// or for a reboot from the reboot command.
	Milestones map[string]float64 `json:"milestones,omitempty"`
	Time       string             `json:"systemd_analyze_time,omitempty"`
	Blame      []string           `json:"blame_top_services,omitempty"`
	Chain      []string           `json:"critical_chain,omitempty"`
	Error      string             `json:"error,omitempty"`
}

// milestones are the serial console's lines that divide a boot: the
// firmware hands over to the unified kernel image, the initrd's systemd
// starts, the real root's systemd starts, first boot starts and ends.
var milestones = []struct {
	name string
	re   *regexp.Regexp
}{
	{"kernel_loaded", regexp.MustCompile(`EFI stub: Loaded initrd`)},
	{"initrd_systemd", regexp.MustCompile(`Booting initrd of`)},
	{"root_systemd", regexp.MustCompile(`Welcome to .*Debian`)},
	{"firstboot_start", reAttempt},
	{"firstboot_done", reComplete},
	{"login_prompt", regexp.MustCompile(`\blogin: `)},
}

// bootMilestones finds each milestone's first line in lines.
func bootMilestones(lines []line) map[string]float64 {
	out := map[string]float64{}
	for _, m := range milestones {
		for _, l := range lines {
			if m.re.MatchString(l.Text) {
				out[m.name] = l.At.Seconds()
				break
			}
		}
	}
	return out
}

// analyzeBoot asks the guest's systemd where the boot's time went, once the
// boot has finished (systemd-analyze refuses before: a oneshot such as the
// Lynis audit keeps the first boot unfinished until it ends).
func analyzeBoot(s *sshClient, wait time.Duration) bootProfile {
	var p bootProfile
	deadline := time.Now().Add(wait)
	for {
		out, code, err := s.run("systemd-analyze time --no-pager")
		if err == nil && code == 0 {
			p.Time = oneLine(out)
			break
		}
		if time.Now().After(deadline) {
			p.Error = "systemd-analyze time: " + oneLine(out) + errSuffix(err)
			return p
		}
		time.Sleep(5 * time.Second)
	}
	if out, code, err := s.run("systemd-analyze blame --no-pager | grep -F .service | head -n 15"); err == nil && code == 0 {
		p.Blame = trimmedLines(out)
	}
	if out, code, err := s.run("systemd-analyze critical-chain --no-pager omerta-console.socket omertad.service"); err == nil && code == 0 {
		p.Chain = trimmedLines(out)
	}
	return p
}

func trimmedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, " \t\r"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

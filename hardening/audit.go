package hardening

import (
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const auditFile = "/etc/audit/rules.d/50-omerta.rules"

// Audit rule groups. "auid!=unset" keeps daemons (containerd mounting
// container roots, udev loading modules) out and every login session in;
// the admin account is a system user below uid 1000, so CIS's "auid>=1000"
// would miss it.
var auditGroups = []struct {
	id, key, title string
	cisID          string
	profiles       []config.Profile
	rules          []string
}{
	{"identity", "identity", "Changes to accounts and groups are audited", "6.2.3.8", all, []string{
		"-w /etc/passwd -p wa -k identity",
		"-w /etc/group -p wa -k identity",
		"-w /etc/shadow -p wa -k identity",
		"-w /etc/gshadow -p wa -k identity",
		"-w /etc/security/opasswd -p wa -k identity",
	}},
	{"privilege", "privilege", "Use of privilege (sudo, sudoers changes, set-user-ID executions) is audited", "6.2.3.2", all, []string{
		"-w /etc/sudoers -p wa -k privilege",
		"-w /etc/sudoers.d -p wa -k privilege",
		"-w /usr/bin/sudo -p x -k privilege",
		"-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0 -F auid!=unset -k privilege",
		"-a always,exit -F arch=b32 -S execve -C uid!=euid -F euid=0 -F auid!=unset -k privilege",
	}},
	{"modules", "modules", "Kernel module loading and unloading is audited", "6.2.3.19", all, []string{
		"-w /usr/sbin/insmod -p x -k modules",
		"-w /usr/sbin/rmmod -p x -k modules",
		"-w /usr/sbin/modprobe -p x -k modules",
		"-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -F auid!=unset -k modules",
		"-a always,exit -F arch=b32 -S init_module,finit_module,delete_module -F auid!=unset -k modules",
	}},
	{"time", "time-change", "Changes to the system time are audited", "6.2.3.4", all, []string{
		"-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
		"-a always,exit -F arch=b32 -S adjtimex,settimeofday,clock_settime -k time-change",
		"-w /etc/localtime -p wa -k time-change",
	}},
	{"mounts", "mounts", "File system mounts by users are audited", "6.2.3.10", all, []string{
		"-a always,exit -F arch=b64 -S mount,umount2 -F auid!=unset -k mounts",
		"-a always,exit -F arch=b32 -S mount,umount,umount2 -F auid!=unset -k mounts",
	}},
	{"config", "audit-config", "Changes to the audit and appliance configuration are audited", "6.2.4.8", proUp, []string{
		"-w /etc/audit/ -p wa -k audit-config",
		"-w /etc/omerta/ -p wa -k audit-config",
		"-w /etc/ssh/sshd_config.d/ -p wa -k audit-config",
	}},
}

func auditControls() []Control {
	var out []Control
	for _, g := range auditGroups {
		out = append(out, Control{
			ID:         "audit." + g.id,
			Title:      g.title,
			References: refs(cis(g.cisID), srg("SRG-OS-000062-GPOS-00031")),
			Profiles:   g.profiles,
			owned:      func(*env) (string, []string) { return auditFile, append([]string{"## " + g.title}, g.rules...) },
			check: func(e *env) outcome {
				o := checkLines(e, auditFile, g.rules)
				if o.result != Pass || !e.opts.Live {
					return o
				}
				out, err := e.run("auditctl", "-l")
				o.evidence = append(o.evidence, cmdEvidence("auditctl -l", out, ""))
				if err != nil {
					o.result, o.actual = Error, "auditctl -l: "+firstLine(out)
					return o
				}
				n := 0
				for _, l := range strings.Split(string(out), "\n") {
					if strings.HasSuffix(l, "-k "+g.key) || strings.HasSuffix(l, "key="+g.key) {
						n++
					}
				}
				if n < len(g.rules) {
					o.result, o.actual = Fail, fmt.Sprintf("kernel has %d of %d rules with key %s loaded", n, len(g.rules), g.key)
				} else {
					o.actual += fmt.Sprintf("; %d rules with key %s loaded", n, g.key)
				}
				return o
			},
		})
	}
	out = append(out, Control{
		ID:         "audit.immutable",
		Title:      "The audit configuration is immutable until reboot",
		References: refs(cis("6.2.3.20"), srg("SRG-OS-000057-GPOS-00027")),
		Profiles:   enterprise,
		// augenrules moves any -e line to the end of the generated rules.
		owned: func(*env) (string, []string) {
			return auditFile, []string{"## Immutable until reboot (enterprise)", "-e 2"}
		},
		check: func(e *env) outcome {
			o := checkLines(e, auditFile, []string{"-e 2"})
			if o.result != Pass || !e.opts.Live {
				return o
			}
			out, err := e.run("auditctl", "-s")
			o.evidence = append(o.evidence, cmdEvidence("auditctl -s", out, lineMatching(out, func(l string) bool { return strings.HasPrefix(l, "enabled") })))
			if err != nil {
				o.result, o.actual = Error, "auditctl -s: "+firstLine(out)
				return o
			}
			if lineMatching(out, func(l string) bool { return l == "enabled 2" }) == "" {
				o.result, o.actual = Fail, "the loaded audit configuration is not locked (auditctl -s has no \"enabled 2\")"
			} else {
				o.actual = "enabled 2 (locked)"
			}
			return o
		},
	})
	return out
}

// liveAudit loads the rules unless the kernel's configuration is already
// locked (then only a reboot loads new rules, and the check says so).
func liveAudit(e *env, ctrls []Control) error {
	if !e.exists("/usr/sbin/auditctl") && !e.exists("/sbin/auditctl") {
		return nil
	}
	st, err := e.opts.Runner(e.ctx, "auditctl", "-s")
	if err != nil {
		return fmt.Errorf("auditctl -s: %s: %w", firstLine(st), err)
	}
	if lineMatching(st, func(l string) bool { return l == "enabled 2" }) != "" {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "augenrules", "--load"); err != nil {
		return fmt.Errorf("augenrules --load: %s: %w", firstLine(out), err)
	}
	return nil
}

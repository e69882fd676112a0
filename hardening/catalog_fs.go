package hardening

import "fmt"

// tmpMountControls mount the temporary file systems nodev, nosuid and
// noexec.
func tmpMountControls() []Control {
	var c []Control
	for _, m := range []struct{ mp, base string }{{"/tmp", "1.1.2.1"}, {"/dev/shm", "1.1.2.2"}, {"/var/tmp", "1.1.2.6"}} {
		for i, opt := range []string{"nodev", "nosuid", "noexec"} {
			c = append(c, mountControl(m.mp, opt, fmt.Sprintf("%s.%d", m.base, i+2), all))
		}
	}
	return c
}

// permControls keep the account and boot files owned by root and no more
// open than CIS allows.
func permControls() []Control {
	shadowGroups := []string{"root", "shadow"}
	return []Control{
		permControl("perm.etc-passwd", "/etc/passwd", 0o644, []string{"root"}, all, cis("7.1.1")),
		permControl("perm.etc-passwd-backup", "/etc/passwd-", 0o644, []string{"root"}, all, cis("7.1.2")),
		permControl("perm.etc-group", "/etc/group", 0o644, []string{"root"}, all, cis("7.1.3")),
		permControl("perm.etc-group-backup", "/etc/group-", 0o644, []string{"root"}, all, cis("7.1.4")),
		permControl("perm.etc-shadow", "/etc/shadow", 0o640, shadowGroups, all, cis("7.1.5")),
		permControl("perm.etc-shadow-backup", "/etc/shadow-", 0o640, shadowGroups, all, cis("7.1.6")),
		permControl("perm.etc-gshadow", "/etc/gshadow", 0o640, shadowGroups, all, cis("7.1.7")),
		permControl("perm.etc-gshadow-backup", "/etc/gshadow-", 0o640, shadowGroups, all, cis("7.1.8")),
		permControl("perm.etc-shells", "/etc/shells", 0o644, []string{"root"}, all, cis("7.1.9")),
		permControl("perm.etc-opasswd", "/etc/security/opasswd", 0o600, []string{"root"}, all, cis("7.1.10")),
		permControl("perm.grub-cfg", "/boot/grub/grub.cfg", 0o600, []string{"root"}, all, cis("1.4.2")),
		permControl("perm.boot", "/boot", 0o700, []string{"root"}, proUp, srg("SRG-OS-000480-GPOS-00227")),
		permControl("perm.sshd-config", "/etc/ssh/sshd_config", 0o600, []string{"root"}, all, cis("5.1.1")),
		permControl("perm.crontab", "/etc/crontab", 0o600, []string{"root"}, all, cis("2.4.1.2")),
		permControl("perm.cron-d", "/etc/cron.d", 0o700, []string{"root"}, all, cis("2.4.1.7")),
		permControl("perm.sudoers", "/etc/sudoers", 0o440, []string{"root"}, all, srg("SRG-OS-000480-GPOS-00227")),
	}
}

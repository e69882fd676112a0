package hardening

import (
	"fmt"
	"os"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

// ptraceScope: 1 lets a process trace only its descendants (debuggers
// still work for a user appliance); 2 restricts ptrace to CAP_SYS_PTRACE.
func ptraceScope(p config.Profile) string {
	if p == config.ProfileUser {
		return "1"
	}
	return "2"
}

const (
	waiverIPForward = "containerd's CNI bridge routes container traffic through the host, which needs net.ipv4.ip_forward=1; the nftables input policy and CNI's own forward rules filter it instead"
	waiverOverlay   = "containerd's overlayfs snapshotter mounts every container root with overlay; disabling the module would stop all agents"
)

// catalog is every control, in report order.
func catalog() []Control {
	var c []Control
	add := func(x ...Control) { c = append(c, x...) }

	// Kernel self-protection (KSPP recommended settings).
	add(
		sysctlControl("kernel.kptr_restrict", "Kernel pointers are hidden from every user", fixed("2"), all, kspp("kernel.kptr_restrict"), srg("SRG-OS-000132-GPOS-00067")),
		sysctlControl("kernel.dmesg_restrict", "Only privileged users can read the kernel log", fixed("1"), all, kspp("kernel.dmesg_restrict"), srg("SRG-OS-000138-GPOS-00069")),
		sysctlControl("kernel.perf_event_paranoid", "Unprivileged users cannot use perf events", fixed("3"), all, kspp("kernel.perf_event_paranoid")),
		sysctlControl("kernel.unprivileged_bpf_disabled", "Unprivileged users cannot load BPF programs", fixed("1"), all, kspp("kernel.unprivileged_bpf_disabled"), srg("SRG-OS-000132-GPOS-00067")),
		sysctlControl("net.core.bpf_jit_harden", "The BPF JIT is hardened for every user", fixed("2"), all, kspp("net.core.bpf_jit_harden")),
		sysctlControl("kernel.yama.ptrace_scope", "ptrace is restricted (Yama)", ptraceScope, all, cis("1.5.2"), kspp("kernel.yama.ptrace_scope")),
		sysctlControl("fs.protected_symlinks", "Symlinks in world-writable sticky directories are followed only by their owner", fixed("1"), all, kspp("fs.protected_symlinks")),
		sysctlControl("fs.protected_hardlinks", "Hard links need ownership of or access to the target", fixed("1"), all, kspp("fs.protected_hardlinks")),
		sysctlControl("fs.protected_fifos", "FIFOs in sticky directories are opened only by their owner", fixed("2"), all, kspp("fs.protected_fifos")),
		sysctlControl("fs.protected_regular", "Regular files in sticky directories are opened only by their owner", fixed("2"), all, kspp("fs.protected_regular")),
		sysctlControl("fs.suid_dumpable", "Set-user-ID programs never dump core", fixed("0"), all, cis("1.5.4"), kspp("fs.suid_dumpable")),
		sysctlControl("kernel.randomize_va_space", "Address space layout randomisation is full", fixed("2"), all, cis("1.5.3"), kspp("kernel.randomize_va_space"), srg("SRG-OS-000433-GPOS-00193")),
		sysctlControl("dev.tty.ldisc_autoload", "TTY line disciplines are not loaded on demand", fixed("0"), all, kspp("dev.tty.ldisc_autoload")),
		sysctlControl("vm.unprivileged_userfaultfd", "Unprivileged users cannot use userfaultfd", fixed("0"), all, kspp("vm.unprivileged_userfaultfd")),
		sysctlControl("kernel.kexec_load_disabled", "No other kernel can be loaded with kexec", fixed("1"), all, kspp("kernel.kexec_load_disabled")),
		sysctlControl("kernel.sysrq", "The magic SysRq key is disabled", fixed("0"), all, kspp("kernel.sysrq")),
		sysctlControl("kernel.core_uses_pid", "Core file names carry the process ID", fixed("1"), all),
		sysctlControl("dev.tty.legacy_tiocsti", "TIOCSTI cannot inject input into another terminal", fixed("0"), proUp, kspp("dev.tty.legacy_tiocsti")),
	)

	// Network parameters (CIS Debian Linux 12, 3.3).
	add(sysctlWaiver("net.ipv4.ip_forward", "IP forwarding is disabled", "0", waiverIPForward, cis("3.3.1")))
	net := []struct{ key, val, title, cisID string }{
		{"net.ipv4.conf.all.send_redirects", "0", "ICMP redirects are not sent (all interfaces)", "3.3.2"},
		{"net.ipv4.conf.default.send_redirects", "0", "ICMP redirects are not sent (new interfaces)", "3.3.2"},
		{"net.ipv4.icmp_ignore_bogus_error_responses", "1", "Bogus ICMP error responses are ignored", "3.3.3"},
		{"net.ipv4.icmp_echo_ignore_broadcasts", "1", "Broadcast ICMP echo requests are ignored", "3.3.4"},
		{"net.ipv4.conf.all.accept_redirects", "0", "IPv4 ICMP redirects are not accepted (all interfaces)", "3.3.5"},
		{"net.ipv4.conf.default.accept_redirects", "0", "IPv4 ICMP redirects are not accepted (new interfaces)", "3.3.5"},
		{"net.ipv6.conf.all.accept_redirects", "0", "IPv6 ICMP redirects are not accepted (all interfaces)", "3.3.5"},
		{"net.ipv6.conf.default.accept_redirects", "0", "IPv6 ICMP redirects are not accepted (new interfaces)", "3.3.5"},
		{"net.ipv4.conf.all.secure_redirects", "0", "Secure ICMP redirects are not accepted (all interfaces)", "3.3.6"},
		{"net.ipv4.conf.default.secure_redirects", "0", "Secure ICMP redirects are not accepted (new interfaces)", "3.3.6"},
		{"net.ipv4.conf.all.rp_filter", "1", "Strict reverse path filtering (all interfaces)", "3.3.7"},
		{"net.ipv4.conf.default.rp_filter", "1", "Strict reverse path filtering (new interfaces)", "3.3.7"},
		{"net.ipv4.conf.all.accept_source_route", "0", "IPv4 source-routed packets are refused (all interfaces)", "3.3.8"},
		{"net.ipv4.conf.default.accept_source_route", "0", "IPv4 source-routed packets are refused (new interfaces)", "3.3.8"},
		{"net.ipv6.conf.all.accept_source_route", "0", "IPv6 source-routed packets are refused (all interfaces)", "3.3.8"},
		{"net.ipv6.conf.default.accept_source_route", "0", "IPv6 source-routed packets are refused (new interfaces)", "3.3.8"},
		{"net.ipv4.conf.all.log_martians", "1", "Packets with impossible addresses are logged (all interfaces)", "3.3.9"},
		{"net.ipv4.conf.default.log_martians", "1", "Packets with impossible addresses are logged (new interfaces)", "3.3.9"},
		{"net.ipv4.tcp_syncookies", "1", "TCP SYN cookies are on", "3.3.10"},
		{"net.ipv6.conf.all.accept_ra", "0", "IPv6 router advertisements are not accepted by the kernel (all interfaces)", "3.3.11"},
		{"net.ipv6.conf.default.accept_ra", "0", "IPv6 router advertisements are not accepted by the kernel (new interfaces)", "3.3.11"},
	}
	for _, n := range net {
		add(sysctlControl(n.key, n.title, fixed(n.val), all, cis(n.cisID), srg("SRG-OS-000480-GPOS-00227")))
	}

	add(cmdlineControls()...)

	// Modules for file systems, protocols and buses the appliance never uses.
	for _, m := range []struct {
		name, cisID string
		profiles    []config.Profile
	}{
		{"cramfs", "1.1.1.1", all}, {"freevxfs", "1.1.1.2", all}, {"hfs", "1.1.1.3", all},
		{"hfsplus", "1.1.1.4", all}, {"jffs2", "1.1.1.5", all}, {"udf", "1.1.1.8", all},
		{"squashfs", "1.1.1.7", enterprise},
	} {
		add(moduleControl(m.name, "file system", m.profiles, cis(m.cisID)))
	}
	add(moduleWaiver("overlay", "Loading of the overlay file system module is disabled", waiverOverlay, cis("1.1.1.6")))
	for _, m := range []struct{ name, cisID string }{{"dccp", "3.2.1"}, {"tipc", "3.2.2"}, {"rds", "3.2.3"}, {"sctp", "3.2.4"}} {
		add(moduleControl(m.name, "network protocol", all, cis(m.cisID)))
	}
	add(
		moduleControl("firewire-core", "FireWire (DMA-capable bus)", proUp, srg("SRG-OS-000114-GPOS-00059")),
		moduleControl("usb-storage", "USB mass storage", enterprise, cis("1.1.1.9"), srg("SRG-OS-000114-GPOS-00059")),
	)

	// Temporary file systems.
	for _, m := range []struct{ mp, base string }{{"/tmp", "1.1.2.1"}, {"/dev/shm", "1.1.2.2"}, {"/var/tmp", "1.1.2.6"}} {
		for i, opt := range []string{"nodev", "nosuid", "noexec"} {
			add(mountControl(m.mp, opt, fmt.Sprintf("%s.%d", m.base, i+2), all))
		}
	}

	// Core dumps.
	add(
		coreLimitControl(),
		systemdConfControl("coredump.storage", "systemd-coredump stores no core dumps", coredumpFile, "systemd/coredump.conf", "Coredump", "Storage", "none", all, cis("1.5.5")),
		systemdConfControl("coredump.process-size", "systemd-coredump processes no core dumps", coredumpFile, "systemd/coredump.conf", "Coredump", "ProcessSizeMax", "0", all, cis("1.5.5")),
		systemdConfControl("coredump.service-limit", "Services start with a zero core size limit", systemFile, "systemd/system.conf", "Manager", "DefaultLimitCORE", "0", all, srg("SRG-OS-000480-GPOS-00227")),
	)

	// Account and boot files.
	shadowGroups := []string{"root", "shadow"}
	add(
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
	)

	// Passwords and default permissions (login.defs, shell profile).
	add(
		loginDefsControl("PASS_MAX_DAYS", "365", "Passwords expire after at most 365 days", "between 1 and 365", intAtMost(365), all, cis("5.4.1.1")),
		loginDefsControl("PASS_MIN_DAYS", "1", "Passwords cannot be changed again within a day", "at least 1", intAtLeast(1), all, cis("5.4.1.2")),
		loginDefsControl("PASS_WARN_AGE", "7", "Users are warned 7 days before a password expires", "at least 7", intAtLeast(7), all, cis("5.4.1.3")),
		loginDefsControl("ENCRYPT_METHOD", "YESCRYPT", "Passwords are hashed with yescrypt", "YESCRYPT", equalFold("YESCRYPT"), all, cis("5.4.1.4"), srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("SHA_CRYPT_MIN_ROUNDS", "65536", "SHA-crypt hashes use at least 5000 rounds", "at least 5000", intAtLeast(5000), all, srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("SHA_CRYPT_MAX_ROUNDS", "65536", "SHA-crypt hashes use at most a bounded, high number of rounds", "at least 5000", intAtLeast(5000), all, srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("UMASK", "027", "New files are not readable by others (login.defs)", describeUmask(0o027), umaskAtLeast(0o027), all, cis("5.4.3.3")),
		ownedLinesControl("shell.umask", "Login shells start with umask 027", profileFile, []string{"umask 027"}, all, cis("5.4.3.3")),
		ownedLinesControl("shell.tmout", "Idle interactive shells end after 15 minutes", profileFile, []string{"TMOUT=900", "readonly TMOUT", "export TMOUT"}, proUp, cis("5.4.3.2")),
	)

	add(nftControls()...)

	// OpenSSH server, when installed.
	for _, s := range []struct {
		key, val, title, cisID string
		profiles               []config.Profile
	}{
		{"PermitRootLogin", "no", "root cannot log in over SSH", "5.1.20", all},
		{"PasswordAuthentication", "no", "SSH accepts keys only, never passwords", "5.1.19", all},
		{"KbdInteractiveAuthentication", "no", "SSH keyboard-interactive authentication is off", "5.1.19", all},
		{"PermitEmptyPasswords", "no", "SSH refuses empty passwords", "5.1.19", all},
		{"HostbasedAuthentication", "no", "SSH host-based authentication is off", "5.1.16", all},
		{"IgnoreRhosts", "yes", "SSH ignores .rhosts files", "5.1.17", all},
		{"PermitUserEnvironment", "no", "SSH users cannot set the environment of their session", "5.1.21", all},
		{"X11Forwarding", "no", "SSH X11 forwarding is off", "5.1.12", all},
		{"AllowTcpForwarding", "no", "SSH TCP forwarding is off", "5.1.12", all},
		{"AllowAgentForwarding", "no", "SSH agent forwarding is off", "5.1.12", all},
		{"GatewayPorts", "no", "SSH forwarded ports are not exposed to the network", "5.1.12", all},
		{"PermitTunnel", "no", "SSH tunnel devices are off", "5.1.12", all},
		{"MaxAuthTries", "3", "SSH allows at most 3 authentication attempts per connection", "5.1.14", all},
		{"MaxSessions", "2", "SSH allows at most 2 sessions per connection", "5.1.15", all},
		{"MaxStartups", "10:30:60", "SSH limits unauthenticated connections", "5.1.16", all},
		{"LoginGraceTime", "60", "SSH drops connections that do not authenticate within 60 seconds", "5.1.13", all},
		{"ClientAliveInterval", "300", "SSH probes idle clients every 5 minutes", "5.1.7", all},
		{"ClientAliveCountMax", "2", "SSH drops clients that miss two probes", "5.1.7", all},
		{"TCPKeepAlive", "no", "SSH uses its own encrypted keepalives, not spoofable TCP ones", "5.1.7", all},
		{"LogLevel", "VERBOSE", "SSH logs key fingerprints of logins", "5.1.13", all},
		{"UseDNS", "no", "SSH does not trust reverse DNS", "5.1.16", all},
		{"Compression", "no", "SSH compression is off", "5.1.16", all},
		{"StrictModes", "yes", "SSH checks the permissions of users' key files", "5.1.16", all},
		{"PrintLastLog", "yes", "SSH shows the last login on login", "5.1.16", all},
		{"AllowUsers", "omerta-admin", "Only the appliance admin account may log in over SSH", "5.1.4", all},
		{"Banner", issueNetFile, "SSH shows the legal banner before login", "5.1.5", all},
		{"Ciphers", "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr", "SSH uses only strong ciphers", "5.1.6", all},
		{"MACs", "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com", "SSH uses only encrypt-then-MAC SHA-2 MACs", "5.1.9", all},
		{"KexAlgorithms", "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512", "SSH uses only strong key exchanges", "5.1.8", all},
	} {
		add(sshdControl(s.key, s.val, s.title, s.profiles, cis(s.cisID), srg("SRG-OS-000033-GPOS-00014")))
	}

	add(auditControls()...)

	add(
		systemdConfControl("journald.storage", "The journal is kept on disk across reboots", journaldFile, "systemd/journald.conf", "Journal", "Storage", "persistent", all, cis("6.1.2.2"), srg("SRG-OS-000341-GPOS-00132")),
		systemdConfControl("journald.compress", "Large journal entries are compressed", journaldFile, "systemd/journald.conf", "Journal", "Compress", "yes", all, cis("6.1.2.3")),
	)
	add(bannerControls()...)
	return c
}

// liveGroupSteps run once after the per-control live steps: they load
// whole files into the kernel or a daemon.
var liveGroupSteps = []func(e *env, ctrls []Control) error{
	liveNft,
	liveAudit,
	liveSSH,
	liveJournald,
}

func hasControl(ctrls []Control, prefix string) bool {
	for _, c := range ctrls {
		if strings.HasPrefix(c.ID, prefix) && c.Waiver == "" {
			return true
		}
	}
	return false
}

func liveNft(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "nft.") || !e.exists("/usr/sbin/nft") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "nft", "-f", nftFile); err != nil {
		return fmt.Errorf("loading %s: %s: %w", nftFile, firstLine(out), err)
	}
	return nil
}

// liveSSH makes a running sshd re-read its configuration; reload keeps
// open sessions (the e2e test's among them).
func liveSSH(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "ssh.") || !e.exists(sshdBinary) || !e.exists("/usr/bin/systemctl") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "systemctl", "try-reload-or-restart", "ssh.service"); err != nil {
		return fmt.Errorf("reloading sshd: %s: %w", firstLine(out), err)
	}
	return nil
}

// liveJournald restarts journald so Storage=persistent takes effect now
// and flushes the boot's volatile journal to disk.
func liveJournald(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "journald.") || !e.exists("/usr/bin/systemctl") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "systemctl", "restart", "systemd-journald.service"); err != nil {
		return fmt.Errorf("restarting journald: %s: %w", firstLine(out), err)
	}
	if _, err := os.Stat(e.path("/usr/bin/journalctl")); err == nil {
		if out, err := e.opts.Runner(e.ctx, "journalctl", "--flush"); err != nil {
			return fmt.Errorf("journalctl --flush: %s: %w", firstLine(out), err)
		}
	}
	return nil
}

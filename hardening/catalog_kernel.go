package hardening

import "github.com/omertaos/omertaos/appliance/config"

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

// kernelControls are the kernel self-protection sysctls (KSPP recommended
// settings).
func kernelControls() []Control {
	return []Control{
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
	}
}

// networkControls are the network sysctls of CIS Debian Linux 12, 3.3.
func networkControls() []Control {
	c := []Control{sysctlWaiver("net.ipv4.ip_forward", "IP forwarding is disabled", "0", waiverIPForward, cis("3.3.1"))}
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
		c = append(c, sysctlControl(n.key, n.title, fixed(n.val), all, cis(n.cisID), srg("SRG-OS-000480-GPOS-00227")))
	}
	return c
}

// moduleControls keep the modules for file systems, protocols and buses
// the appliance never uses from loading.
func moduleControls() []Control {
	var c []Control
	for _, m := range []struct {
		name, cisID string
		profiles    []config.Profile
	}{
		{"cramfs", "1.1.1.1", all}, {"freevxfs", "1.1.1.2", all}, {"hfs", "1.1.1.3", all},
		{"hfsplus", "1.1.1.4", all}, {"jffs2", "1.1.1.5", all}, {"udf", "1.1.1.8", all},
		{"squashfs", "1.1.1.7", enterprise},
	} {
		c = append(c, moduleControl(m.name, "file system", m.profiles, cis(m.cisID)))
	}
	c = append(c, moduleWaiver("overlay", "Loading of the overlay file system module is disabled", waiverOverlay, cis("1.1.1.6")))
	for _, m := range []struct{ name, cisID string }{{"dccp", "3.2.1"}, {"tipc", "3.2.2"}, {"rds", "3.2.3"}, {"sctp", "3.2.4"}} {
		c = append(c, moduleControl(m.name, "network protocol", all, cis(m.cisID)))
	}
	return append(c,
		moduleControl("firewire-core", "FireWire (DMA-capable bus)", proUp, srg("SRG-OS-000114-GPOS-00059")),
		moduleControl("usb-storage", "USB mass storage", enterprise, cis("1.1.1.9"), srg("SRG-OS-000114-GPOS-00059")),
	)
}

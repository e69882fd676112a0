package hardening

import (
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

// The image builder writes the kernel command line into the unified kernel
// image from /etc/kernel/cmdline; live, the kernel reports it in
// /proc/cmdline.
const (
	imageCmdline = "/etc/kernel/cmdline"
	procCmdline  = "/proc/cmdline"
)

type cmdlineParam struct {
	param    string   // as written on the command line
	accept   []string // other values that satisfy the control
	title    string
	profiles []config.Profile
	refs     []Reference
}

// What each parameter costs, measured by `make cmdline-bench` (the image's
// kernel under QEMU TCG, one vCPU, the CPU scripts/qemu.sh boots: max
// without ERMS; a busybox initramfs; medians of 3 rounds, each figure the
// image's line over the image's line without the parameter; repeat runs
// move a figure by up to about 10 points, so smaller ones are noise).
// Kernel boot to /init, 200 fork+exec, 200k read+write calls, 512 MiB of
// tmpfs written and freed:
//
//	whole line vs stock (console only)  boot +43%  exec +32%  syscalls +1575%  pages -47%
//	pti=on                              boot -22%  exec +37%  syscalls +1389%  pages -46%
//	init_on_free=1                      boot +31%  exec  -3%  syscalls   -2%  pages  -5%
//	audit=1 audit_backlog_limit=8192    boot -19%  exec  -1%  syscalls   +4%  pages  +5%
//	every other parameter               within noise (at most 11 points on one figure)
//
// With ERMS in the guest's CPU (QEMU 7.2's TCG runs rep stosb, the
// kernel's way to clear a page with ERMS, one byte per iteration) the same
// bench gave the whole line boot +91% and init_on_free=1 boot +85%, exec
// +15%: most of init_on_free's cost under emulation was that.
//
// Under TCG pti=on is the whole of the system-call cost (QEMU flushes its
// software TLB on every CR3 write, twice per call), which is why the Lynis
// audit, a shell script of system calls, takes 2.5 times as long as on a
// stock line under emulation. On hardware with PCID the same switch costs
// tens of nanoseconds per call, and Talos forces it on too, so it stays.
// init_on_free=1's cost is the zeroing of the memory the kernel frees. On
// the appliance's own boot (2 GiB, one boot each side by side, serial
// timestamps) it costs about 11 s from the kernel's start to the real
// root's systemd, 59.8 s against 49.1 s with init_on_free=0 appended: the
// kernel's release of its memory at start ("Memory:" at 7.4 s against
// 1.0 s) and the switch to the real root, where systemd empties the
// initrd (12.6 s against 4.7 s; 33.7 to 35.5 s with ERMS, and the console's
// line on the serial port 28 s later, 183.5 against 155.3 s). Dropping
// REP_GOOD as well (rep stosq; model=0) or FSRM (rep movsb copies) changed
// nothing: the switch took 12.3 s, the Lynis audit as long. That is not the
// initrd's own pages: an initrd with a quarter fewer bytes and four tenths
// fewer files (no hwdb, perl or gconv) switched in the same time, side by
// side. On hardware the kernel zeroes gigabytes a second, so it stays
// there too. The pages figure falls with pti=on; that is not explained
// yet and is not counted as a gain.
//
// cmdlineParams are set by the image, not by Apply: they are checks only.
// lockdown is enterprise only because it refuses unsigned modules, and the
// NVIDIA driver built by DKMS is unsigned unless the image signs it.
var cmdlineParams = []cmdlineParam{
	{"slab_nomerge", nil, "Slab caches are not merged (heap overflows stay in their cache)", all, refs(kspp("slab_nomerge"))},
	{"init_on_alloc=1", nil, "Memory is zeroed when allocated", all, refs(kspp("init_on_alloc"))},
	{"page_alloc.shuffle=1", nil, "The page allocator's free lists are randomised", all, refs(kspp("page_alloc.shuffle"))},
	{"randomize_kstack_offset=on", nil, "The kernel stack offset is randomised on each system call", all, refs(kspp("randomize_kstack_offset"))},
	{"vsyscall=none", nil, "The legacy vsyscall page is removed", all, refs(kspp("vsyscall"))},
	{"init_on_free=1", nil, "Memory is zeroed when freed", proUp, refs(kspp("init_on_free"))},
	{"pti=on", nil, "Kernel page-table isolation is forced on", proUp, refs(kspp("pti"))},
	{"debugfs=off", nil, "debugfs is not available", proUp, refs(kspp("debugfs"))},
	{"lockdown=integrity", []string{"lockdown=confidentiality"}, "Kernel lockdown protects the running kernel's integrity", enterprise, refs(kspp("lockdown"), srg("SRG-OS-000480-GPOS-00227"))},
}

// KernelCmdline returns the hardening parameters the image must put on the
// kernel command line for profile p.
func KernelCmdline(p config.Profile) []string {
	var out []string
	for _, c := range cmdlineParams {
		for _, q := range c.profiles {
			if q == p {
				out = append(out, c.param)
			}
		}
	}
	return out
}

// cmdlineHas reports whether the command line sets want (or an accepted
// alternative). For key=value the last occurrence wins, as in the kernel.
func cmdlineHas(cmdline string, want string, accept []string) (bool, string) {
	key, _, isKV := strings.Cut(want, "=")
	var last string
	found := false
	for _, tok := range strings.Fields(cmdline) {
		k, _, _ := strings.Cut(tok, "=")
		if k == key {
			last, found = tok, true
		}
	}
	if !found {
		return false, ""
	}
	if !isKV {
		return true, last
	}
	if last == want {
		return true, last
	}
	for _, a := range accept {
		if last == a {
			return true, last
		}
	}
	return false, last
}

func cmdlineControls() []Control {
	var out []Control
	for _, c := range cmdlineParams {
		key, _, _ := strings.Cut(c.param, "=")
		out = append(out, Control{
			ID:         "kernel.cmdline." + key,
			Title:      c.title + " (" + c.param + ", set by the image)",
			References: c.refs,
			Profiles:   c.profiles,
			check: func(e *env) outcome {
				o := outcome{expected: c.param}
				if len(c.accept) > 0 {
					o.expected += " (or " + strings.Join(c.accept, ", ") + ")"
				}
				src := imageCmdline
				if e.opts.Live {
					src = procCmdline
				}
				data, exists, err := e.read(src)
				if err != nil {
					o.result, o.actual = Error, err.Error()
					return o
				}
				if !exists {
					o.result, o.actual = NotChecked, "set by the image: "+src+" does not exist under the root"
					o.evidence = []Evidence{fileEvidence(src, nil, false, "")}
					return o
				}
				ok, tok := cmdlineHas(string(data), c.param, c.accept)
				o.evidence = []Evidence{fileEvidence(src, data, true, tok)}
				switch {
				case ok:
					o.result, o.actual = Pass, tok+" (in "+src+")"
				case tok != "":
					o.result, o.actual = Fail, tok+" (in "+src+")"
				default:
					o.result, o.actual = Fail, key+" is not on the command line ("+src+")"
				}
				return o
			},
		})
	}
	return out
}

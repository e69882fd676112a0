package probe

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what /proc and /sys say about the machine.
type Host struct {
	CPU            CPU            `json:"cpu"`
	Memory         Memory         `json:"memory"`
	Disks          []Disk         `json:"disks"`
	StateFS        StateFS        `json:"state_fs"`
	Kernel         Kernel         `json:"kernel"`
	Security       Security       `json:"security"`
	Virtualization Virtualization `json:"virtualization"`
}

// CPU summarises /proc/cpuinfo.
type CPU struct {
	Model   string `json:"model"`
	Vendor  string `json:"vendor,omitempty"`
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	// Flags lists, of the flags that matter to AI workloads and to
	// virtualisation, those the CPU has.
	Flags []string `json:"flags"`
	// HardwareVirtualization is "vmx" (Intel VT-x), "svm" (AMD-V) or "".
	HardwareVirtualization string `json:"hardware_virtualization,omitempty"`
}

// notableFlags are reported when present: vector units for CPU inference,
// crypto for disk and TLS speed, and virtualisation.
var notableFlags = []string{
	"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
	"avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
	"aes", "sha_ni", "vmx", "svm", "hypervisor",
}

// Memory is from /proc/meminfo, in bytes.
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	SwapBytes      uint64 `json:"swap_bytes"`
}

// Disk is one whole block device from /sys/block.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  uint64 `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Removable  bool   `json:"removable"`
	Model      string `json:"model,omitempty"`
}

// StateFS is the filesystem that holds the state directory.
type StateFS struct {
	Path       string `json:"path"`        // the state directory asked about
	MeasuredAt string `json:"measured_at"` // the nearest existing ancestor
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"` // available to unprivileged writers
}

// Kernel describes the running kernel and the features the runtime needs.
type Kernel struct {
	Release string `json:"release"`
	Version string `json:"version"`
	Cmdline string `json:"cmdline"`
	// CgroupVersion is 2 for the unified hierarchy, 1 for legacy or hybrid,
	// 0 when no cgroup filesystem is mounted.
	CgroupVersion int    `json:"cgroup_version"`
	CgroupMode    string `json:"cgroup_mode"` // "unified", "hybrid", "legacy" or "none"
	// Features maps each feature the agent runtime relies on to whether the
	// kernel offers it: overlay, cgroup2, seccomp, user_namespaces.
	Features map[string]bool `json:"features"`
}

// KernelFeatures are the names Kernel.Features uses and the matrix may require.
var KernelFeatures = []string{"overlay", "cgroup2", "seccomp", "user_namespaces"}

// Security is the firmware and platform security state.
type Security struct {
	UEFI bool `json:"uefi"`
	// SecureBoot is "enabled", "disabled", "unsupported" (legacy BIOS) or
	// "unknown" (UEFI, but efivars unreadable).
	SecureBoot string `json:"secure_boot"`
	TPM        TPM    `json:"tpm"`
	IOMMU      IOMMU  `json:"iommu"`
}

// TPM is the first TPM the kernel knows.
type TPM struct {
	Present bool   `json:"present"`
	Version string `json:"version,omitempty"` // "2.0", "1.2" or "unknown"
}

// IOMMU is on when the kernel has formed IOMMU groups.
type IOMMU struct {
	Enabled bool `json:"enabled"`
	Groups  int  `json:"groups"`
}

// Virtualization says whether the machine is bare metal.
type Virtualization struct {
	Kind       string `json:"kind"`                 // "bare-metal" or "vm"
	Hypervisor string `json:"hypervisor,omitempty"` // "kvm", "vmware", ... or "unknown"
	// Evidence names what decided it, for an administrator who disagrees.
	Evidence string `json:"evidence"`
}

func probeHost(r *reader, stateDir string, p *problems) Host {
	var h Host
	cpuFlags := map[string]bool{}
	if b, err := r.read("/proc/cpuinfo"); err != nil {
		p.addf("reading /proc/cpuinfo: %v", err)
	} else {
		h.CPU, cpuFlags = parseCPUInfo(b)
	}
	if b, err := r.read("/proc/meminfo"); err != nil {
		p.addf("reading /proc/meminfo: %v", err)
	} else {
		h.Memory = parseMemInfo(b)
	}
	h.Disks = probeDisks(r, p)
	h.StateFS = probeStateFS(r, stateDir, p)
	h.Kernel = probeKernel(r, p)
	h.Security = probeSecurity(r, p)
	h.Virtualization = probeVirtualization(r, cpuFlags, p)
	return h
}

func parseCPUInfo(b []byte) (CPU, map[string]bool) {
	var c CPU
	flags := map[string]bool{}
	sockets := map[string]bool{}
	cores := map[string]bool{}
	var physID string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			c.Threads++
			physID = ""
		case "model name":
			if c.Model == "" {
				c.Model = v
			}
		case "vendor_id":
			if c.Vendor == "" {
				c.Vendor = v
			}
		case "physical id":
			physID = v
			sockets[v] = true
		case "core id":
			cores[physID+"/"+v] = true
		case "flags", "Features": // x86, arm64
			if len(flags) == 0 {
				for _, f := range strings.Fields(v) {
					flags[f] = true
				}
			}
		}
	}
	c.Sockets = len(sockets)
	c.Cores = len(cores)
	// Without topology lines (arm64, some VMs) every thread is its own core
	// on one socket, which is also what the scheduler sees.
	if c.Sockets == 0 && c.Threads > 0 {
		c.Sockets = 1
	}
	if c.Cores == 0 {
		c.Cores = c.Threads
	}
	c.Flags = []string{}
	for _, f := range notableFlags {
		if flags[f] {
			c.Flags = append(c.Flags, f)
		}
	}
	switch {
	case flags["vmx"]:
		c.HardwareVirtualization = "vmx"
	case flags["svm"]:
		c.HardwareVirtualization = "svm"
	}
	return c, flags
}

func parseMemInfo(b []byte) Memory {
	var m Memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) == 3 && f[2] == "kB" {
			n *= 1024
		}
		switch f[0] {
		case "MemTotal:":
			m.TotalBytes = n
		case "MemAvailable:":
			m.AvailableBytes = n
		case "SwapTotal:":
			m.SwapBytes = n
		}
	}
	return m
}

// virtualDisk reports block devices that are not storage a machine ships
// with: loop devices, RAM disks, zram swap, device-mapper and network disks.
func virtualDisk(name string) bool {
	for _, pre := range []string{"loop", "ram", "zram", "dm-", "nbd", "sr", "fd"} {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

func probeDisks(r *reader, p *problems) []Disk {
	disks := []Disk{}
	ents, err := r.fs.ReadDir("/sys/block")
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.addf("listing /sys/block: %v", err)
		}
		return disks
	}
	for _, e := range ents {
		name := e.Name()
		if virtualDisk(name) {
			continue
		}
		base := "/sys/block/" + name
		sectors, err := readUint(r, base+"/size")
		if err != nil {
			p.addf("reading %s/size: %v", base, err)
			continue
		}
		if sectors == 0 { // an empty card reader or a detached virtual disk
			continue
		}
		d := Disk{Name: name, SizeBytes: sectors * 512} // always 512-byte units
		if v, err := readUint(r, base+"/queue/rotational"); err == nil {
			d.Rotational = v == 1
		}
		if v, err := readUint(r, base+"/removable"); err == nil {
			d.Removable = v == 1
		}
		if b, err := r.read(base + "/device/model"); err == nil {
			d.Model = strings.TrimSpace(string(b))
		}
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks
}

func readUint(r *reader, p string) (uint64, error) {
	b, err := r.read(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func probeStateFS(r *reader, stateDir string, p *problems) StateFS {
	s := StateFS{Path: stateDir}
	// Before first boot the state directory may not exist yet; its parent's
	// filesystem is where it will be created.
	dir := filepath.Clean(stateDir)
	for {
		st, err := r.fs.Statfs(dir)
		if err == nil {
			s.MeasuredAt = dir
			s.TotalBytes = st.Blocks * uint64(st.Bsize)
			s.FreeBytes = st.Bavail * uint64(st.Bsize)
			return s
		}
		if !errors.Is(err, unix.ENOENT) || dir == "/" {
			p.addf("measuring free space at %s: %v", dir, err)
			return s
		}
		dir = filepath.Dir(dir)
	}
}

func probeKernel(r *reader, p *problems) Kernel {
	k := Kernel{Features: map[string]bool{}}
	trim := func(path string) string {
		b, err := r.read(path)
		if err != nil {
			p.addf("reading %s: %v", path, err)
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	k.Release = trim("/proc/sys/kernel/osrelease")
	k.Version = trim("/proc/version")
	k.Cmdline = trim("/proc/cmdline")

	if b, err := r.read("/proc/filesystems"); err != nil {
		p.addf("reading /proc/filesystems: %v", err)
	} else {
		fs := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				fs[f[len(f)-1]] = true
			}
		}
		k.Features["overlay"] = fs["overlay"]
		k.Features["cgroup2"] = fs["cgroup2"]
	}
	k.Features["seccomp"] = r.exists("/proc/sys/kernel/seccomp/actions_avail")
	if n, err := readUint(r, "/proc/sys/user/max_user_namespaces"); err == nil {
		k.Features["user_namespaces"] = n > 0
	} else {
		k.Features["user_namespaces"] = false
	}

	k.CgroupMode = "none"
	if b, err := r.read("/proc/mounts"); err != nil {
		p.addf("reading /proc/mounts: %v", err)
	} else {
		k.CgroupVersion, k.CgroupMode = cgroupMode(b)
	}
	return k
}

// cgroupMode reads the cgroup layout the way systemd classifies it.
func cgroupMode(mounts []byte) (int, string) {
	var v1, unifiedRoot, hybrid bool
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		target, typ := f[1], f[2]
		switch {
		case typ == "cgroup2" && target == "/sys/fs/cgroup":
			unifiedRoot = true
		case typ == "cgroup2" && target == "/sys/fs/cgroup/unified":
			hybrid = true
		case typ == "cgroup":
			v1 = true
		}
	}
	switch {
	case unifiedRoot:
		return 2, "unified"
	case hybrid:
		return 1, "hybrid"
	case v1:
		return 1, "legacy"
	}
	return 0, "none"
}

// secureBootVar is the EFI global variable SecureBoot: 4 bytes of
// attributes, then one byte, 1 when Secure Boot is enforcing.
const secureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

func probeSecurity(r *reader, p *problems) Security {
	var s Security
	s.UEFI = r.exists("/sys/firmware/efi")
	switch {
	case !s.UEFI:
		s.SecureBoot = "unsupported"
	default:
		b, ok := r.readOptional(secureBootVar, p)
		switch {
		case !ok || len(b) < 5:
			s.SecureBoot = "unknown"
		case b[4] == 1:
			s.SecureBoot = "enabled"
		default:
			s.SecureBoot = "disabled"
		}
	}

	tpms, _ := r.fs.Glob("/sys/class/tpm/tpm[0-9]*")
	if len(tpms) > 0 {
		sort.Strings(tpms)
		dev := "/sys/class/tpm/" + filepath.Base(tpms[0])
		s.TPM.Present = true
		s.TPM.Version = "unknown"
		if v, err := readUint(r, dev+"/tpm_version_major"); err == nil {
			switch v {
			case 2:
				s.TPM.Version = "2.0"
			case 1:
				s.TPM.Version = "1.2"
			}
		} else if b, err := r.read(dev + "/device/description"); err == nil && strings.Contains(string(b), "2.0") {
			// Kernels before 5.6 have no tpm_version_major.
			s.TPM.Version = "2.0"
		}
	}

	if ents, err := r.fs.ReadDir("/sys/kernel/iommu_groups"); err == nil {
		s.IOMMU.Groups = len(ents)
		s.IOMMU.Enabled = len(ents) > 0
	} else if !errors.Is(err, os.ErrNotExist) {
		p.addf("listing /sys/kernel/iommu_groups: %v", err)
	}
	return s
}

// hypervisorVendors maps DMI vendor and product strings to hypervisor names,
// as systemd-detect-virt does.
var hypervisorVendors = []struct{ match, name string }{
	{"KVM", "kvm"}, {"QEMU", "qemu"}, {"VMware", "vmware"}, {"VirtualBox", "oracle"},
	{"innotek", "oracle"}, {"Xen", "xen"}, {"Microsoft Corporation", "microsoft"},
	{"Amazon EC2", "amazon"}, {"Google Compute Engine", "google"},
	{"Parallels", "parallels"}, {"Bochs", "bochs"}, {"Firecracker", "firecracker"},
	{"OpenStack", "kvm"},
}

func probeVirtualization(r *reader, cpuFlags map[string]bool, p *problems) Virtualization {
	var dmi []string
	for _, f := range []string{"/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name"} {
		if b, ok := r.readOptional(f, p); ok {
			dmi = append(dmi, strings.TrimSpace(string(b)))
		}
	}
	// Microsoft also makes bare-metal Surface machines: only its "Virtual
	// Machine" product counts.
	joined := strings.Join(dmi, " ")
	for _, hv := range hypervisorVendors {
		if strings.Contains(joined, hv.match) {
			if hv.name == "microsoft" && !strings.Contains(joined, "Virtual Machine") {
				continue
			}
			return Virtualization{Kind: "vm", Hypervisor: hv.name, Evidence: "DMI: " + joined}
		}
	}
	if b, ok := r.readOptional("/sys/hypervisor/type", p); ok {
		return Virtualization{Kind: "vm", Hypervisor: strings.TrimSpace(string(b)), Evidence: "/sys/hypervisor/type"}
	}
	if cpuFlags["hypervisor"] {
		ev := "CPU flag hypervisor"
		if len(dmi) == 0 {
			ev += "; no DMI tables to name it"
		}
		return Virtualization{Kind: "vm", Hypervisor: "unknown", Evidence: ev}
	}
	ev := "no hypervisor CPU flag"
	if joined != "" {
		ev += "; DMI: " + joined
	}
	return Virtualization{Kind: "bare-metal", Evidence: ev}
}

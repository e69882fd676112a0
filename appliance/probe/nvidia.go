package probe

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// NVIDIA's PCI vendor ID, and the PCI base class of display controllers
// (0x0300 VGA, 0x0302 3D controller: every NVIDIA GPU is one or the
// other). NVSwitches (0x0680) and the audio function of a graphics card
// (0x0403) share the vendor but are not GPUs.
const (
	nvidiaVendor      = "0x10de"
	displayClassStart = "0x03"
	pciDevicesDir     = "/sys/bus/pci/devices"
	// maxPCIFunctions bounds the devices read: a large server has a few
	// hundred PCI functions.
	maxPCIFunctions = 4096
	// maxSysfsAttr bounds one sysfs attribute such as vendor ("0x10de\n").
	// It is a page, not the few bytes such an attribute holds: sysfs
	// reports every attribute's size as 4096, and the read refuses a file
	// whose size is over its limit, so a smaller bound refused every PCI
	// device of a real machine.
	maxSysfsAttr = 4096
)

// PCIAddress is a PCI function's name in sysfs, "0000:1b:00.0".
var PCIAddress = regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// nvidiaPCIGPUs lists the NVIDIA GPUs on the PCI bus, driver or none: what
// decides whether a missing driver matters. A machine without a PCI bus
// (a microVM) has none, which is not a problem.
func nvidiaPCIGPUs(r *reader, p *problems) []string {
	out := []string{}
	ents, err := r.fs.ReadDir(pciDevicesDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.addf("listing %s: %v", pciDevicesDir, err)
		}
		return out
	}
	if len(ents) > maxPCIFunctions {
		p.addf("%s lists %d devices; only the first %d are read", pciDevicesDir, len(ents), maxPCIFunctions)
		ents = ents[:maxPCIFunctions]
	}
	for _, e := range ents {
		name := e.Name()
		if !PCIAddress.MatchString(name) {
			continue // not a PCI function; the name is never shown
		}
		vendor, verr := r.fs.ReadFile(pciDevicesDir+"/"+name+"/vendor", maxSysfsAttr)
		class, cerr := r.fs.ReadFile(pciDevicesDir+"/"+name+"/class", maxSysfsAttr)
		if verr != nil || cerr != nil {
			p.addf("reading PCI device %s: %v", name, errors.Join(verr, cerr))
			continue
		}
		if strings.TrimSpace(string(vendor)) == nvidiaVendor && strings.HasPrefix(strings.TrimSpace(string(class)), displayClassStart) {
			out = append(out, name)
		}
	}
	return out
}

// KernelRelease is a release name usable in a path: the kernel's own
// ("6.12.38+deb13-amd64"), nothing a glob or a path would read otherwise.
// appliance/gpu/extension checks its manifest's kernel with it.
var KernelRelease = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$`)

// extensionDirs are where systemd-sysext looks for extension images, and
// where the image keeps its NVIDIA extension until a GPU asks for it
// (appliance/gpu/extension).
var extensionDirs = []string{"/etc/extensions", "/run/extensions", "/var/lib/extensions", "/usr/lib/extensions", "/usr/local/lib/extensions", "/usr/lib/omerta/extensions"}

// NVIDIAPCIGPUs lists the PCI functions of root that are NVIDIA GPUs
// (vendor 0x10de, a display controller class), the way the probe counts
// them, and what could not be read on the way; appliance/gpu/extension
// merges the driver only when gpus is not empty.
func NVIDIAPCIGPUs(root rootfs.Root) (gpus, unread []string) {
	var p problems
	gpus = nvidiaPCIGPUs(&reader{fs: root}, &p)
	return gpus, p
}

// libraryGlobs are where Debian and other distributions put libnvidia-ml.
var libraryGlobs = []string{"/usr/lib/*-linux-gnu/libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1", "/usr/lib/libnvidia-ml.so.1"}

// maxDriverFiles bounds the evidence kept: one file of each kind says it.
const maxDriverFiles = 16

// driverFiles lists what shows an NVIDIA driver installed although NVML
// did not load: the module for the running kernel (DKMS puts it in
// updates/dkms, Debian's prebuilt packages elsewhere under the release),
// the management library, or an NVIDIA system extension not merged,
// which the image merges only when the PCI bus has an NVIDIA GPU.
func driverFiles(r *reader, p *problems) []string {
	var globs []string
	// The host probe reports an unreadable release; without it only the
	// module is not looked for.
	if b, err := r.read("/proc/sys/kernel/osrelease"); err == nil {
		if rel := strings.TrimSpace(string(b)); KernelRelease.MatchString(rel) {
			for _, mods := range []string{"/usr/lib/modules/", "/lib/modules/"} {
				base := mods + rel
				globs = append(globs, base+"/*/nvidia.ko*", base+"/*/*/nvidia.ko*", base+"/kernel/drivers/video/nvidia.ko*")
			}
		}
	}
	globs = append(globs, libraryGlobs...)
	for _, d := range extensionDirs {
		globs = append(globs, d+"/*nvidia*")
	}
	seen := map[string]bool{}
	var out []string
	for _, g := range globs {
		m, err := r.fs.Glob(g)
		if err != nil {
			p.addf("looking for the NVIDIA driver (%s): %v", g, err)
			continue
		}
		for _, f := range m {
			if len(out) < maxDriverFiles && !seen[f] && strings.IndexFunc(f, func(c rune) bool { return c < ' ' || c == 0x7f }) < 0 {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// noNVMLSummary says why NVML did not load, in the words an operator
// acts on. "Installed" means the module, the library or the extension is
// on disk, or the module is loaded; "no NVIDIA GPU" means none on the PCI
// bus. On a machine without a GPU the image leaves the NVIDIA extension
// unmerged, so its library is absent and its module cannot load: that is
// "installed, no GPU", distinct from a machine with no driver at all.
func noNVMLSummary(ret nvml.Return, g *GPU) string {
	installed := len(g.DriverFiles) > 0 || g.KernelDriverVersion != "" || len(g.KernelModules) > 0
	gpus := len(g.PCIGPUs)
	switch {
	case ret == nvml.ERROR_LIBRARY_NOT_FOUND && !installed && gpus == 0:
		return "no NVIDIA driver found"
	case ret == nvml.ERROR_LIBRARY_NOT_FOUND && !installed:
		return fmt.Sprintf("no NVIDIA driver found for the %s on the PCI bus", countGPUs(gpus))
	case (ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED) && gpus == 0:
		return "NVIDIA driver installed, no NVIDIA GPU found"
	case ret == nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Sprintf("NVIDIA driver installed but libnvidia-ml.so.1 is not loadable, with %s on the PCI bus", countGPUs(gpus))
	case ret == nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVIDIA library installed but the kernel driver is not loaded"
	}
	return "NVIDIA driver present but NVML failed: " + ret.Error()
}

func countGPUs(n int) string {
	if n == 1 {
		return "NVIDIA GPU"
	}
	return fmt.Sprintf("%d NVIDIA GPUs", n)
}

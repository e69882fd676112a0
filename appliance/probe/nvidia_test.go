package probe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
)

// The first lines of /proc/driver/nvidia/version as each module writes it.
const (
	proprietaryLine = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
	openLine        = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build  (pbuilder@debian)  Tue Jun 24 12:00:00 UTC 2025\nGCC version:  gcc version 14.2.0 (Debian 14.2.0-19)\n"
	openLine570     = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build  (dvs-builder@U22-I3-AF03-09-1)  Thu Jul 10 2025\n"
	propLine570     = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.172.08  Thu Jul 10 2025\n"
)

// fakeRoot writes files (path → content) into a new root.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// pciDevice is the sysfs files of one PCI function.
func pciDevice(files map[string]string, addr, vendor, class string) map[string]string {
	files["sys/bus/pci/devices/"+addr+"/vendor"] = vendor + "\n"
	files["sys/bus/pci/devices/"+addr+"/class"] = class + "\n"
	return files
}

// The open module puts "for x86_64" after "Kernel Module": the version is
// the number after it, and the flavour is read from the same line.
func TestKernelModuleVersionFile(t *testing.T) {
	for _, tc := range []struct {
		name, file, version, flavour string
		problem                      bool
	}{
		{"proprietary", proprietaryLine, "550.54.15", "proprietary", false},
		{"open", openLine, "550.163.01", "open", false},
		{"no NVRM line", "GCC version:  gcc version 14.2.0\n", "", "", true},
		{"garbage version", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  for  x\n", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, map[string]string{"proc/driver/nvidia/version": tc.file})
			var p problems
			g := probeGPU(noLibrary(), testReader(t, root), &p)
			if g.KernelDriverVersion != tc.version || g.KernelModuleFlavour != tc.flavour {
				t.Errorf("version %q flavour %q, want %q %q", g.KernelDriverVersion, g.KernelModuleFlavour, tc.version, tc.flavour)
			}
			if got := len(p) > 0 && strings.Contains(p[0], kernelVersionFile); got != tc.problem {
				t.Errorf("problems %q, want a problem naming the file: %v", p, tc.problem)
			}
		})
	}
}

// Without NVML the probe tells apart a machine with no driver from one
// whose driver is installed but has no GPU to drive (the image's NVIDIA
// extension, left unmerged on a machine without an NVIDIA PCI device).
func TestNoNVMLSummaries(t *testing.T) {
	const rel = "6.12.38+deb13-amd64"
	kernel := func(files map[string]string) map[string]string {
		files["proc/sys/kernel/osrelease"] = rel + "\n"
		return files
	}
	for _, tc := range []struct {
		name    string
		lib     nvml.Interface
		files   map[string]string
		summary string
		files2  []string // DriverFiles
		pci     []string
	}{
		{name: "nothing", lib: noLibrary(), files: kernel(map[string]string{}), summary: "no NVIDIA driver found"},
		{name: "a module for another kernel only", lib: noLibrary(),
			files:   kernel(map[string]string{"lib/modules/6.1.0-30-amd64/updates/dkms/nvidia.ko": "elf"}),
			summary: "no NVIDIA driver found"},
		{name: "GPU without a driver", lib: noLibrary(),
			files: pciDevice(pciDevice(pciDevice(kernel(map[string]string{}),
				"0000:1b:00.0", "0x10de", "0x030200"), "0000:1b:00.1", "0x10de", "0x040300"), "0000:00:02.0", "0x8086", "0x030000"),
			summary: "no NVIDIA driver found for the NVIDIA GPU on the PCI bus", pci: []string{"0000:1b:00.0"}},
		{name: "extension not merged, no GPU", lib: noLibrary(),
			files:   kernel(map[string]string{"usr/lib/extensions/omerta-nvidia.raw": "squashfs"}),
			summary: "NVIDIA driver installed, no NVIDIA GPU found", files2: []string{"/usr/lib/extensions/omerta-nvidia.raw"}},
		{name: "the image's extension, kept unmerged, no GPU", lib: noLibrary(),
			files:   kernel(map[string]string{"usr/lib/omerta/extensions/omerta-nvidia.raw": "erofs"}),
			summary: "NVIDIA driver installed, no NVIDIA GPU found", files2: []string{"/usr/lib/omerta/extensions/omerta-nvidia.raw"}},
		{name: "module for the running kernel, no GPU", lib: noLibrary(),
			files:   kernel(map[string]string{"usr/lib/modules/" + rel + "/updates/dkms/nvidia.ko.xz": "elf"}),
			summary: "NVIDIA driver installed, no NVIDIA GPU found", files2: []string{"/usr/lib/modules/" + rel + "/updates/dkms/nvidia.ko.xz"}},
		{name: "library only, NVSwitch is no GPU", lib: noLibrary(),
			files: pciDevice(kernel(map[string]string{"usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1": "elf"}),
				"0000:05:00.0", "0x10de", "0x068000"),
			summary: "NVIDIA driver installed, no NVIDIA GPU found", files2: []string{"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"}},
		{name: "extension merged by force, module refused to load", lib: driverNotLoaded(),
			files:   kernel(map[string]string{"usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1": "elf"}),
			summary: "NVIDIA driver installed, no NVIDIA GPU found", files2: []string{"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"}},
		{name: "installed, GPUs, extension not merged", lib: noLibrary(),
			files: pciDevice(pciDevice(kernel(map[string]string{"var/lib/extensions/nvidia-550.raw": "squashfs"}),
				"0000:1b:00.0", "0x10de", "0x030200"), "0000:43:00.0", "0x10de", "0x030200"),
			summary: "NVIDIA driver installed but libnvidia-ml.so.1 is not loadable, with 2 NVIDIA GPUs on the PCI bus",
			files2:  []string{"/var/lib/extensions/nvidia-550.raw"}, pci: []string{"0000:1b:00.0", "0000:43:00.0"}},
		{name: "GPU, library, module not loaded", lib: driverNotLoaded(),
			files:   pciDevice(kernel(map[string]string{}), "0000:1b:00.0", "0x10de", "0x030200"),
			summary: "NVIDIA library installed but the kernel driver is not loaded", pci: []string{"0000:1b:00.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p problems
			g := probeGPU(tc.lib, testReader(t, fakeRoot(t, tc.files)), &p)
			if g.Summary != tc.summary {
				t.Errorf("summary %q, want %q", g.Summary, tc.summary)
			}
			if !cmp.Equal(g.DriverFiles, tc.files2) {
				t.Errorf("driver files %q, want %q", g.DriverFiles, tc.files2)
			}
			if tc.pci == nil {
				tc.pci = []string{}
			}
			if !cmp.Equal(g.PCIGPUs, tc.pci) || len(p) != 0 {
				t.Errorf("PCI GPUs %q, want %q (problems %q)", g.PCIGPUs, tc.pci, p)
			}
			v := Evaluate(&Result{GPU: g}, DefaultMatrix(), config.ProfilePro)
			c, _ := findCheck(v, "gpu.count")
			if want := tc.summary + "; pro requires at least one NVIDIA GPU"; c.Reason != want || c.Status != StatusFail {
				t.Errorf("gpu.count %s %q, want fail %q", c.Status, c.Reason, want)
			}
		})
	}
}

// Every profile checks that the installed driver and its modules drive
// each GPU's generation, with the reason from appliance/gpu.
func TestDriverSupportCheck(t *testing.T) {
	withDriver := func(s *server.Server, v string) nvml.Interface {
		s.DriverVersion = v
		return complete(s)
	}
	for _, tc := range []struct {
		name, versionFile string
		lib               nvml.Interface
		status            Status
		reason            string
	}{
		{"H100 on open 550", openLine, withDriver(dgxh100.New(), "550.163.01"), StatusPass,
			"driver 550.163.01 with the open kernel modules drives every GPU"},
		{"H200 on proprietary 550", proprietaryLine, complete(dgxh200.New()), StatusPass,
			"driver 550.54.15 with the proprietary kernel modules drives every GPU"},
		{"B200 on 550", openLine, withDriver(dgxb200.New(), "550.163.01"), StatusFail,
			"driver 550.163.01 with the open kernel modules cannot drive GPU 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA B200 180GB HBM3e: blackwell needs driver branch 570 or later; branch 550 drives maxwell to hopper)"},
		{"B200 on open 570", openLine570, withDriver(dgxb200.New(), "570.172.08"), StatusPass,
			"driver 570.172.08 with the open kernel modules drives every GPU"},
		{"B200 on proprietary 570", propLine570, withDriver(dgxb200.New(), "570.172.08"), StatusFail,
			"driver 570.172.08 with the proprietary kernel modules cannot drive GPU 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA B200 180GB HBM3e: blackwell GPUs run only on the open kernel modules; the proprietary ones are loaded)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p problems
			g := probeGPU(tc.lib, testReader(t, fakeRoot(t, map[string]string{"proc/driver/nvidia/version": tc.versionFile})), &p)
			for _, prof := range config.Profiles {
				c, ok := findCheck(Evaluate(&Result{GPU: g}, DefaultMatrix(), prof), "gpu.driver_support")
				if !ok || c.Status != tc.status || c.Reason != tc.reason {
					t.Errorf("%s: gpu.driver_support %s %q, want %s %q", prof, c.Status, c.Reason, tc.status, tc.reason)
				}
			}
		})
	}
}

// An NVML older than the GPU names no architecture; the compute
// capability places it, so that the driver check still applies.
func TestArchitectureFromComputeCapability(t *testing.T) {
	s := complete(dgxb200.New())
	for _, d := range s.Devices {
		d.(*server.Device).GetArchitectureFunc = func() (nvml.DeviceArchitecture, nvml.Return) {
			return nvml.DEVICE_ARCH_UNKNOWN, nvml.SUCCESS
		}
	}
	var p problems
	g := probeGPU(s, testReader(t, t.TempDir()), &p)
	if a := g.Devices[0].Architecture; a != "blackwell" {
		t.Errorf("architecture %q from compute capability %s, want blackwell", a, g.Devices[0].ComputeCapability)
	}
}

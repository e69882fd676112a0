// Command cmdline prints the kernel command line for the OMERTAOS image:
// the console and boot settings the image needs, then the hardening
// parameters that package hardening asks for (its kernel command line
// controls check exactly these). scripts/image.sh writes the result to the
// image's /etc/kernel/cmdline, which mkosi embeds in the unified kernel image
// and which hardening reads back when it checks an image tree.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/hardening"
)

// base is what the image needs whatever the profile. The serial console
// comes last so that /dev/console (first-boot progress and the setup banner)
// is the serial port; tty0 still shows everything.
var base = []string{
	"rw",
	"console=tty0", "console=ttyS0,115200",
	// Kernel messages at warning and above only: the console is where the
	// administrator reads the setup banner.
	"loglevel=4",
	// The image sets locale, keymap and time zone; nothing may wait at a
	// prompt on a machine with no keyboard.
	"systemd.firstboot=off",
	// Audit from the first process on, with room for the boot's records.
	"audit=1", "audit_backlog_limit=8192",
	// A kernel that panics reboots after 10 s instead of hanging headless;
	// first boot resumes where it stopped.
	"panic=10",
	// DMA isolation where the machine has an IOMMU: every DMA of a device
	// (a GPU that agents drive included) goes through translation, so a
	// device can reach only the memory mapped for it. NVIDIA recommends
	// passthrough (iommu=pt) for host<->GPU copy throughput; we keep
	// translation in every profile, because an agent's code drives the
	// GPU and passthrough would let that device DMA anywhere in the host,
	// and because one image (one unified kernel image) serves every
	// profile, chosen at first boot after the kernel started. Measured
	// under TCG (make cmdline-bench, busybox guest, medians of 3): boot
	// +8 %, +6 % and +6 % for the three, within the bench's ~10-point
	// noise; the cost on hardware (IOTLB misses on DMA-heavy transfers)
	// needs a GPU machine and was not measured.
	"iommu=force", "intel_iommu=on", "amd_iommu=force_isolation",
}

func main() {
	// The image is one for every profile, and the profile is chosen on the
	// first boot; pro's set is the strictest that does not refuse an
	// unsigned (DKMS-built) NVIDIA module, which enterprise's lockdown does.
	profile := flag.String("profile", string(config.ProfilePro), "hardening profile whose kernel parameters to include")
	flag.Parse()
	p, err := config.ParseProfile(*profile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cmdline: -profile:", err)
		os.Exit(2)
	}
	fmt.Println(strings.Join(append(append([]string(nil), base...), hardening.KernelCmdline(p)...), " "))
}

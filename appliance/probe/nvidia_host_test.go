package probe

import (
	"os"
	"testing"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// The PCI scan on this machine's own sysfs, whose attributes all report
// a size of 4096 bytes: no device may be refused for it (a 64-byte bound
// refused every one, which no fixture tree could show).
func TestNVIDIAPCIGPUsHostSysfs(t *testing.T) {
	ents, err := os.ReadDir(pciDevicesDir)
	if err != nil || len(ents) == 0 {
		t.Skipf("no PCI devices in %s here (%v)", pciDevicesDir, err)
	}
	var p problems
	nvidiaPCIGPUs(&reader{fs: rootfs.Host()}, &p)
	if len(p) != 0 {
		t.Errorf("reading this machine's %d PCI devices: %v", len(ents), p)
	}
}

package probe

import (
	"fmt"
	"strconv"
)

// DriftEvent is one way the machine differs from its baseline.
type DriftEvent struct {
	// Kind is a dotted name: gpu.lost, gpu.added, gpu.driver_changed,
	// gpu.driver_lost, gpu.ecc_changed, memory.shrank, cpu.changed,
	// nic.gone, nic.added, disk.gone, kernel.changed, security.changed.
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Before  string `json:"before"`
	After   string `json:"after"`
	Message string `json:"message"`
}

func (e DriftEvent) key() string { return e.Kind + "\x00" + e.Subject + "\x00" + e.After }

// memorySlack is how much less memory counts as "shrank": kernels of one
// machine report MemTotal a few MiB apart from boot to boot.
const memorySlack = 0.01

// Diff lists how cur differs from base, in a stable order.
func Diff(base, cur *Result) []DriftEvent {
	var ev []DriftEvent
	add := func(kind, subject, before, after, format string, args ...any) {
		ev = append(ev, DriftEvent{Kind: kind, Subject: subject, Before: before, After: after, Message: fmt.Sprintf(format, args...)})
	}

	// GPUs are matched by UUID, which survives re-enumeration in another
	// order; devices that could not tell theirs are matched by index.
	key := func(d GPUDevice) string {
		if d.UUID != "" {
			return d.UUID
		}
		return "index " + strconv.Itoa(d.Index)
	}
	curGPUs := map[string]GPUDevice{}
	for _, d := range cur.GPU.Devices {
		if len(d.Errors) == 0 || d.UUID != "" {
			curGPUs[key(d)] = d
		}
	}
	baseGPUs := map[string]bool{}
	for _, d := range base.GPU.Devices {
		k := key(d)
		baseGPUs[k] = true
		subj := fmt.Sprintf("GPU %d (%s)", d.Index, k)
		c, ok := curGPUs[k]
		if !ok || len(c.Errors) > 0 && len(d.Errors) == 0 {
			after := "absent"
			if ok {
				after = c.Errors[0]
			}
			add("gpu.lost", subj, d.Name, after, "GPU %d (%s, %s) is gone since the baseline", d.Index, d.Name, k)
			continue
		}
		if d.ECC != nil && c.ECC != nil && *d.ECC != *c.ECC {
			add("gpu.ecc_changed", subj, onOff(*d.ECC), onOff(*c.ECC), "ECC on GPU %d turned %s", d.Index, onOff(*c.ECC))
		}
	}
	for _, d := range cur.GPU.Devices {
		if k := key(d); !baseGPUs[k] && len(d.Errors) == 0 {
			add("gpu.added", fmt.Sprintf("GPU %d (%s)", d.Index, k), "absent", d.Name, "GPU %d (%s) appeared since the baseline", d.Index, d.Name)
		}
	}
	switch b, c := base.GPU.NVML, cur.GPU.NVML; {
	case b.Available && !c.Available:
		add("gpu.driver_lost", "nvidia driver", b.DriverVersion, c.Error, "the NVIDIA driver %s no longer answers: %s", b.DriverVersion, cur.GPU.Summary)
	case b.Available && c.Available && b.DriverVersion != c.DriverVersion:
		add("gpu.driver_changed", "nvidia driver", b.DriverVersion, c.DriverVersion, "NVIDIA driver changed from %s to %s", b.DriverVersion, c.DriverVersion)
	}

	bm, cm := base.Host.Memory.TotalBytes, cur.Host.Memory.TotalBytes
	if float64(cm) < float64(bm)*(1-memorySlack) {
		add("memory.shrank", "memory", showGiB(bytesGiB(bm)), showGiB(bytesGiB(cm)),
			"memory shrank from %s to %s", showGiB(bytesGiB(bm)), showGiB(bytesGiB(cm)))
	}
	bc, cc := base.Host.CPU, cur.Host.CPU
	if bc.Model != cc.Model || bc.Threads != cc.Threads {
		before, after := fmt.Sprintf("%s × %d", bc.Model, bc.Threads), fmt.Sprintf("%s × %d", cc.Model, cc.Threads)
		add("cpu.changed", "cpu", before, after, "CPU changed from %s to %s", before, after)
	}

	curLinks := map[string]bool{}
	for _, l := range cur.Network.Links {
		curLinks[l.Name] = true
	}
	baseLinks := map[string]bool{}
	for _, l := range base.Network.Links {
		baseLinks[l.Name] = true
		// Only hardware links drift; veths and bridges come and go with
		// containers.
		if l.Type == "device" && l.Name != "lo" && !curLinks[l.Name] {
			add("nic.gone", l.Name, l.MAC, "absent", "network interface %s (%s) is gone since the baseline", l.Name, l.MAC)
		}
	}
	for _, l := range cur.Network.Links {
		if l.Type == "device" && l.Name != "lo" && !baseLinks[l.Name] {
			add("nic.added", l.Name, "absent", l.MAC, "network interface %s (%s) appeared since the baseline", l.Name, l.MAC)
		}
	}
	curDisks := map[string]bool{}
	for _, d := range cur.Host.Disks {
		curDisks[d.Name] = true
	}
	for _, d := range base.Host.Disks {
		if !curDisks[d.Name] {
			add("disk.gone", d.Name, d.Model, "absent", "disk %s (%s, %s) is gone since the baseline", d.Name, d.Model, showGiB(bytesGiB(d.SizeBytes)))
		}
	}

	if b, c := base.Host.Kernel.Release, cur.Host.Kernel.Release; b != c {
		add("kernel.changed", "kernel", b, c, "kernel changed from %s to %s", b, c)
	}
	bs, cs := base.Host.Security, cur.Host.Security
	if bs.SecureBoot != cs.SecureBoot {
		add("security.changed", "secure boot", bs.SecureBoot, cs.SecureBoot, "Secure Boot changed from %s to %s", bs.SecureBoot, cs.SecureBoot)
	}
	if bs.TPM != cs.TPM {
		add("security.changed", "tpm", tpmWord(bs.TPM), tpmWord(cs.TPM), "TPM changed from %s to %s", tpmWord(bs.TPM), tpmWord(cs.TPM))
	}
	if bs.IOMMU.Enabled != cs.IOMMU.Enabled {
		add("security.changed", "iommu", onOff(bs.IOMMU.Enabled), onOff(cs.IOMMU.Enabled), "IOMMU turned %s", onOff(cs.IOMMU.Enabled))
	}
	return ev
}

// newEvents returns the events of cur that prev did not already have, so
// that a lasting change is recorded once, when it first shows.
func newEvents(prev, cur []DriftEvent) []DriftEvent {
	seen := map[string]bool{}
	for _, e := range prev {
		seen[e.key()] = true
	}
	var out []DriftEvent
	for _, e := range cur {
		if !seen[e.key()] {
			out = append(out, e)
		}
	}
	return out
}

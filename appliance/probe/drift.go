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
	var d drift
	d.gpus(base.GPU, cur.GPU)
	d.host(base.Host, cur.Host)
	d.links(base.Network.Links, cur.Network.Links)
	d.disks(base.Host.Disks, cur.Host.Disks)
	d.platform(base.Host, cur.Host)
	return d.ev
}

// drift collects the events of one Diff.
type drift struct{ ev []DriftEvent }

func (d *drift) add(kind, subject, before, after, format string, args ...any) {
	d.ev = append(d.ev, DriftEvent{Kind: kind, Subject: subject, Before: before, After: after, Message: fmt.Sprintf(format, args...)})
}

// gpuKey matches GPUs by UUID, which survives re-enumeration in another
// order; devices that could not tell theirs are matched by index.
func gpuKey(d GPUDevice) string {
	if d.UUID != "" {
		return d.UUID
	}
	return "index " + strconv.Itoa(d.Index)
}

func (d *drift) gpus(base, cur GPU) {
	curGPUs := map[string]GPUDevice{}
	for _, g := range cur.Devices {
		if len(g.Errors) == 0 || g.UUID != "" {
			curGPUs[gpuKey(g)] = g
		}
	}
	baseGPUs := map[string]bool{}
	for _, g := range base.Devices {
		k := gpuKey(g)
		baseGPUs[k] = true
		subj := fmt.Sprintf("GPU %d (%s)", g.Index, k)
		c, ok := curGPUs[k]
		if !ok || len(c.Errors) > 0 && len(g.Errors) == 0 {
			after := "absent"
			if ok {
				after = c.Errors[0]
			}
			d.add("gpu.lost", subj, g.Name, after, "GPU %d (%s, %s) is gone since the baseline", g.Index, g.Name, k)
			continue
		}
		if g.ECC != nil && c.ECC != nil && *g.ECC != *c.ECC {
			d.add("gpu.ecc_changed", subj, onOff(*g.ECC), onOff(*c.ECC), "ECC on GPU %d turned %s", g.Index, onOff(*c.ECC))
		}
	}
	for _, g := range cur.Devices {
		if k := gpuKey(g); !baseGPUs[k] && len(g.Errors) == 0 {
			d.add("gpu.added", fmt.Sprintf("GPU %d (%s)", g.Index, k), "absent", g.Name, "GPU %d (%s) appeared since the baseline", g.Index, g.Name)
		}
	}
	switch b, c := base.NVML, cur.NVML; {
	case b.Available && !c.Available:
		d.add("gpu.driver_lost", "nvidia driver", b.DriverVersion, c.Error, "the NVIDIA driver %s no longer answers: %s", b.DriverVersion, cur.Summary)
	case b.Available && c.Available && b.DriverVersion != c.DriverVersion:
		d.add("gpu.driver_changed", "nvidia driver", b.DriverVersion, c.DriverVersion, "NVIDIA driver changed from %s to %s", b.DriverVersion, c.DriverVersion)
	}
}

func (d *drift) host(base, cur Host) {
	bm, cm := base.Memory.TotalBytes, cur.Memory.TotalBytes
	if float64(cm) < float64(bm)*(1-memorySlack) {
		d.add("memory.shrank", "memory", showGiB(bytesGiB(bm)), showGiB(bytesGiB(cm)),
			"memory shrank from %s to %s", showGiB(bytesGiB(bm)), showGiB(bytesGiB(cm)))
	}
	bc, cc := base.CPU, cur.CPU
	if bc.Model != cc.Model || bc.Threads != cc.Threads {
		before, after := fmt.Sprintf("%s × %d", bc.Model, bc.Threads), fmt.Sprintf("%s × %d", cc.Model, cc.Threads)
		d.add("cpu.changed", "cpu", before, after, "CPU changed from %s to %s", before, after)
	}
}

// links reports hardware links only: veths and bridges come and go with
// containers.
func (d *drift) links(base, cur []Link) {
	hw := func(l Link) bool { return l.Type == "device" && l.Name != "lo" }
	curLinks := map[string]bool{}
	for _, l := range cur {
		curLinks[l.Name] = true
	}
	baseLinks := map[string]bool{}
	for _, l := range base {
		baseLinks[l.Name] = true
		if hw(l) && !curLinks[l.Name] {
			d.add("nic.gone", l.Name, l.MAC, "absent", "network interface %s (%s) is gone since the baseline", l.Name, l.MAC)
		}
	}
	for _, l := range cur {
		if hw(l) && !baseLinks[l.Name] {
			d.add("nic.added", l.Name, "absent", l.MAC, "network interface %s (%s) appeared since the baseline", l.Name, l.MAC)
		}
	}
}

func (d *drift) disks(base, cur []Disk) {
	curDisks := map[string]bool{}
	for _, k := range cur {
		curDisks[k.Name] = true
	}
	for _, k := range base {
		if !curDisks[k.Name] {
			d.add("disk.gone", k.Name, k.Model, "absent", "disk %s (%s, %s) is gone since the baseline", k.Name, k.Model, showGiB(bytesGiB(k.SizeBytes)))
		}
	}
}

// platform reports the kernel and the firmware's security features.
func (d *drift) platform(base, cur Host) {
	if b, c := base.Kernel.Release, cur.Kernel.Release; b != c {
		d.add("kernel.changed", "kernel", b, c, "kernel changed from %s to %s", b, c)
	}
	bs, cs := base.Security, cur.Security
	if bs.SecureBoot != cs.SecureBoot {
		d.add("security.changed", "secure boot", bs.SecureBoot, cs.SecureBoot, "Secure Boot changed from %s to %s", bs.SecureBoot, cs.SecureBoot)
	}
	if bs.TPM != cs.TPM {
		d.add("security.changed", "tpm", tpmWord(bs.TPM), tpmWord(cs.TPM), "TPM changed from %s to %s", tpmWord(bs.TPM), tpmWord(cs.TPM))
	}
	if bs.IOMMU.Enabled != cs.IOMMU.Enabled {
		d.add("security.changed", "iommu", onOff(bs.IOMMU.Enabled), onOff(cs.IOMMU.Enabled), "IOMMU turned %s", onOff(cs.IOMMU.Enabled))
	}
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

package probe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// WriteSummary writes what a person needs to see in five seconds: the
// verdict, then the checks that did not pass, then the passing ones, then a
// few lines about the machine.
func WriteSummary(w io.Writer, res *Result, v Verdict) error {
	counts := map[Status]int{}
	for _, c := range v.Checks {
		counts[c.Status]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s for profile %s: %d failed, %d warnings, %d passed\n\n",
		strings.ToUpper(string(v.Status)), v.Profile, counts[StatusFail], counts[StatusWarn], counts[StatusPass])

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tMEASURED\tREASON")
	ordered := v.Failing()
	for _, c := range v.Checks {
		if c.Status == StatusPass {
			ordered = append(ordered, c)
		}
	}
	for _, c := range ordered {
		st := strings.ToUpper(string(c.Status))
		if c.Status == StatusPass {
			st = "ok"
		}
		row(tw, st, c.ID, clip(c.Measured, 40), c.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	h := res.Host
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	virt := h.Virtualization.Kind
	if h.Virtualization.Hypervisor != "" {
		virt += " (" + h.Virtualization.Hypervisor + ")"
	}
	row(tw, "Machine", fmt.Sprintf("%s; %d socket(s), %d cores, %d threads; %.1f GiB memory; %s",
		orUnknown(h.CPU.Model), h.CPU.Sockets, h.CPU.Cores, h.CPU.Threads, bytesGiB(h.Memory.TotalBytes), virt))
	row(tw, "Kernel", fmt.Sprintf("%s; cgroup v%d (%s); Secure Boot %s; TPM %s; IOMMU %s",
		orUnknown(h.Kernel.Release), h.Kernel.CgroupVersion, h.Kernel.CgroupMode, h.Security.SecureBoot,
		tpmWord(h.Security.TPM), onOff(h.Security.IOMMU.Enabled)))
	row(tw, "Storage", fmt.Sprintf("%.1f GiB free of %.1f GiB at %s",
		bytesGiB(h.StateFS.FreeBytes), bytesGiB(h.StateFS.TotalBytes), orUnknown(h.StateFS.MeasuredAt)))
	gpu := res.GPU.Summary
	if res.GPU.NVML.DriverVersion != "" {
		gpu += fmt.Sprintf("; driver %s, CUDA %s", res.GPU.NVML.DriverVersion, res.GPU.NVML.CUDADriverVersion)
	}
	row(tw, "GPU", gpu)
	ctr := res.Runtime.Containerd
	if ctr.Reachable {
		row(tw, "Runtime", fmt.Sprintf("containerd %s at %s, snapshotter %s", ctr.Version, ctr.Address, ctr.Snapshotter))
	} else {
		row(tw, "Runtime", fmt.Sprintf("containerd not reachable: %s", ctr.Error))
	}
	var links []string
	for _, l := range res.Network.Links {
		if l.Name == "lo" {
			continue
		}
		s := l.Name + " " + l.State
		if len(l.Addresses) > 0 {
			s += " " + strings.Join(l.Addresses, " ")
		}
		links = append(links, s)
	}
	row(tw, "Network", orUnknown(strings.Join(links, "; ")))
	if len(res.Problems) > 0 {
		row(tw, "Unread", strings.Join(res.Problems, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// row writes one line of tab-separated cells, each escaped: CPU models,
// GPU names, link names and error texts come from the machine, and one
// holding a newline or an escape sequence must not forge a line of its own.
func row(tw io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = terminal.Escape(c)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func tpmWord(t TPM) string {
	if !t.Present {
		return "none"
	}
	return t.Version
}

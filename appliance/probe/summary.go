package probe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", st, c.ID, clip(c.Measured, 40), c.Reason)
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
	fmt.Fprintf(tw, "Machine\t%s; %d socket(s), %d cores, %d threads; %.1f GiB memory; %s\n",
		orUnknown(h.CPU.Model), h.CPU.Sockets, h.CPU.Cores, h.CPU.Threads, bytesGiB(h.Memory.TotalBytes), virt)
	fmt.Fprintf(tw, "Kernel\t%s; cgroup v%d (%s); Secure Boot %s; TPM %s; IOMMU %s\n",
		orUnknown(h.Kernel.Release), h.Kernel.CgroupVersion, h.Kernel.CgroupMode, h.Security.SecureBoot,
		tpmWord(h.Security.TPM), onOff(h.Security.IOMMU.Enabled))
	fmt.Fprintf(tw, "Storage\t%.1f GiB free of %.1f GiB at %s\n",
		bytesGiB(h.StateFS.FreeBytes), bytesGiB(h.StateFS.TotalBytes), orUnknown(h.StateFS.MeasuredAt))
	gpu := res.GPU.Summary
	if res.GPU.NVML.DriverVersion != "" {
		gpu += fmt.Sprintf("; driver %s, CUDA %s", res.GPU.NVML.DriverVersion, res.GPU.NVML.CUDADriverVersion)
	}
	fmt.Fprintf(tw, "GPU\t%s\n", gpu)
	ctr := res.Runtime.Containerd
	if ctr.Reachable {
		fmt.Fprintf(tw, "Runtime\tcontainerd %s at %s, snapshotter %s\n", ctr.Version, ctr.Address, ctr.Snapshotter)
	} else {
		fmt.Fprintf(tw, "Runtime\tcontainerd not reachable: %s\n", ctr.Error)
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
	fmt.Fprintf(tw, "Network\t%s\n", orUnknown(strings.Join(links, "; ")))
	if len(res.Problems) > 0 {
		fmt.Fprintf(tw, "Unread\t%s\n", strings.Join(res.Problems, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
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

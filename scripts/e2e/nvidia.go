package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/omertaos/omertaos/appliance/gpu/extension"
	"github.com/omertaos/omertaos/firstboot/report"
)

// The NVIDIA extension as the image ships it (image/mkosi.images/nvidia).
const (
	nvidiaExtension = "omerta-nvidia"
	nvidiaStatePath = "/run/omerta/gpu-extension.json"
	nvidiaModule    = "nvidia-current-open"
	noGPUSummary    = "NVIDIA driver installed, no NVIDIA GPU found"
	nvmlLibrary     = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
)

// nvidiaResult is what the e2e records of the extension in its results.
type nvidiaResult struct {
	BootOutcome   string `json:"boot_outcome"`
	ProbeSummary  string `json:"probe_summary"`
	ForcedOutcome string `json:"forced_outcome"`
	Vermagic      string `json:"vermagic"`
	Kernel        string `json:"kernel"`
	NvidiaSMIExit int    `json:"nvidia_smi_exit"`
	ForcedSummary string `json:"forced_probe_summary"`
}

// mainNVIDIAUnmerged checks the GPU-less guest as it booted: the
// extension is shipped, left unmerged, and the probe and the report say
// "installed, no GPU", not "no driver".
func (r *run) mainNVIDIAUnmerged(sc string, s *sshClient) {
	st, err := readGPUState(s)
	r.check(sc, "NVIDIA extension not merged without an NVIDIA GPU", err == nil && st.Outcome == extension.NotMerged,
		"outcome %q, reason %q%s", st.Outcome, st.Reason, errSuffix(err))
	r.res.NVIDIA.BootOutcome = st.Outcome
	out, _, _ := s.run("sudo -n systemd-sysext status 2>&1")
	r.check(sc, "systemd-sysext lists no merged extension", !strings.Contains(afterLine(out, "HIERARCHY"), nvidiaExtension),
		"%s", oneLine(out))
	p, err := probeGPU(s)
	r.res.NVIDIA.ProbeSummary = p.Summary
	r.check(sc, "probe: "+noGPUSummary, err == nil && p.Summary == noGPUSummary, "summary %q, NVML %q%s", p.Summary, p.NVML.Error, errSuffix(err))
	rep, stderr, code, err := s.run2("sudo -n cat " + reportPath)
	if !r.check(sc, "report read for its NVIDIA extension header", err == nil && code == 0, "exit %d%s", code, errSuffix(errors.Join(err, nonEmpty(stderr)))) {
		return
	}
	var parsed struct {
		Header struct {
			GPUExtension *report.GPUExtension `json:"gpu_extension"`
		} `json:"header"`
	}
	jerr := json.Unmarshal([]byte(rep), &parsed)
	g := parsed.Header.GPUExtension
	r.check(sc, "report header: NVIDIA extension not merged, with its driver and hash", jerr == nil && g != nil && g.Outcome == extension.NotMerged && g.DriverVersion != "" && len(g.SHA256) == 64,
		"%+v%s", g, errSuffix(jerr))
}

// mainNVIDIAForced merges the extension on the GPU-less guest, as an
// operator would with --force, and checks the driver is the one built for
// this kernel and fails cleanly for want of a GPU. Last before power-off:
// the merge lives in /run and goes with the boot.
func (r *run) mainNVIDIAForced(sc string, s *sshClient) {
	out, code, err := s.run("sudo -n omerta gpu extension merge --force 2>&1")
	st, serr := readGPUState(s)
	r.res.NVIDIA.ForcedOutcome = st.Outcome
	if !r.check(sc, "forced merge of the NVIDIA extension", err == nil && code == 0 && st.Outcome == extension.Merged,
		"exit %d, outcome %q: %s%s", code, st.Outcome, oneLine(out), errSuffix(errors.Join(err, serr))) {
		return
	}
	out, _, _ = s.run("sudo -n systemd-sysext status 2>&1")
	r.check(sc, "systemd-sysext shows the extension merged on /usr", strings.Contains(out, nvidiaExtension), "%s", oneLine(out))
	kernel, _, kerr := s.run("uname -r")
	vermagic, code, verr := s.run("/usr/sbin/modinfo -F vermagic " + nvidiaModule)
	kernel, vermagic = strings.TrimSpace(kernel), strings.TrimSpace(vermagic)
	r.res.NVIDIA.Kernel, r.res.NVIDIA.Vermagic = kernel, vermagic
	r.check(sc, "modinfo "+nvidiaModule+": built for the running kernel", kerr == nil && verr == nil && code == 0 && kernel != "" && strings.HasPrefix(vermagic, kernel+" "),
		"uname -r %q, vermagic %q, exit %d%s", kernel, vermagic, code, errSuffix(errors.Join(kerr, verr)))
	out, code, err = s.run("nvidia-smi 2>&1")
	r.res.NVIDIA.NvidiaSMIExit = code
	r.check(sc, "nvidia-smi fails cleanly without a GPU", err == nil && code > 0 && code < 128,
		"exit %d: %s%s", code, firstLines(out, 2), errSuffix(err))
	// Merged, NVML loads and finds no kernel driver (the module refuses to
	// load without a GPU): still "installed, no GPU", now from NVML.
	p, err := probeGPU(s)
	r.res.NVIDIA.ForcedSummary = p.Summary
	r.check(sc, "probe after the merge: NVML loads, the kernel driver is not loaded, no GPU",
		err == nil && p.Summary == noGPUSummary && strings.Contains(strings.ToLower(p.NVML.Error), "not loaded") && slices.Contains(p.DriverFiles, nvmlLibrary),
		"summary %q, NVML %q, files %q%s", p.Summary, p.NVML.Error, p.DriverFiles, errSuffix(err))
}

// readGPUState reads the guest's state file with the parser first boot
// uses, so that a state the report would refuse fails here too.
func readGPUState(s *sshClient) (extension.State, error) {
	out, code, err := s.run("cat " + extension.StatePath)
	if err != nil || code != 0 {
		return extension.State{}, fmt.Errorf("reading %s: exit %d: %s%s", extension.StatePath, code, oneLine(out), errSuffix(err))
	}
	st, err := extension.ParseState([]byte(out))
	if err != nil {
		return st, fmt.Errorf("parsing %s: %w", extension.StatePath, err)
	}
	return st, nil
}

// probedGPU is the part of the probe's GPU section the test reads.
type probedGPU struct {
	Summary string `json:"summary"`
	NVML    struct {
		Error string `json:"error"`
	} `json:"nvml"`
	DriverFiles []string `json:"driver_files"`
}

func probeGPU(s *sshClient) (probedGPU, error) {
	var p struct {
		Result struct {
			GPU probedGPU `json:"gpu"`
		} `json:"result"`
	}
	stdout, stderr, code, err := s.run2("sudo -n omerta probe --json")
	if err != nil || code < 0 || code > 2 {
		return p.Result.GPU, fmt.Errorf("omerta probe: exit %d%s", code, errSuffix(errors.Join(err, nonEmpty(stderr))))
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		return p.Result.GPU, fmt.Errorf("parsing the probe's JSON: %w", err)
	}
	return p.Result.GPU, nil
}

// afterLine is what follows the first line containing head, or all of out.
func afterLine(out, head string) string {
	if i := strings.Index(out, head); i >= 0 {
		if j := strings.IndexByte(out[i:], '\n'); j >= 0 {
			return out[i+j:]
		}
		return ""
	}
	return out
}

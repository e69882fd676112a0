package gpu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Architecture is a GPU generation, named as NVML names it (lowercase, the
// same words probe reports).
type Architecture string

// The generations, oldest first.
const (
	Kepler    Architecture = "kepler"
	Maxwell   Architecture = "maxwell"
	Pascal    Architecture = "pascal"
	Volta     Architecture = "volta"
	Turing    Architecture = "turing"
	Ampere    Architecture = "ampere"
	Ada       Architecture = "ada"
	Hopper    Architecture = "hopper"
	Blackwell Architecture = "blackwell"
	Rubin     Architecture = "rubin"
	// Unknown is a GPU that neither NVML's architecture nor its compute
	// capability places; no series is known to support it.
	Unknown Architecture = "unknown"
)

// Architectures lists the known generations, oldest first.
var Architectures = []Architecture{Kepler, Maxwell, Pascal, Volta, Turing, Ampere, Ada, Hopper, Blackwell, Rubin}

func (a Architecture) rank() int { return slices.Index(Architectures, a) }

// ArchitectureOf places a GPU from NVML's answers. The architecture enum is
// preferred; an NVML older than the GPU answers DEVICE_ARCH_UNKNOWN (or a
// number it has no name for), and the compute capability, which every NVML
// reports, decides instead. ok is false when neither places it.
func ArchitectureOf(arch nvml.DeviceArchitecture, ccMajor, ccMinor int) (a Architecture, ok bool) {
	if a, ok := nvmlArchitectures[arch]; ok {
		return a, true
	}
	return architectureFromCC(ccMajor, ccMinor)
}

var nvmlArchitectures = map[nvml.DeviceArchitecture]Architecture{
	nvml.DEVICE_ARCH_KEPLER: Kepler, nvml.DEVICE_ARCH_MAXWELL: Maxwell,
	nvml.DEVICE_ARCH_PASCAL: Pascal, nvml.DEVICE_ARCH_VOLTA: Volta,
	nvml.DEVICE_ARCH_TURING: Turing, nvml.DEVICE_ARCH_AMPERE: Ampere,
	nvml.DEVICE_ARCH_ADA: Ada, nvml.DEVICE_ARCH_HOPPER: Hopper,
	nvml.DEVICE_ARCH_BLACKWELL: Blackwell, nvml.DEVICE_ARCH_RUBIN: Rubin,
}

// architectureFromCC follows NVIDIA's CUDA compute capability table:
// 3.x Kepler, 5.x Maxwell, 6.x Pascal, 7.0/7.2 Volta, 7.5 Turing,
// 8.0/8.6/8.7 Ampere, 8.9 Ada, 9.0 Hopper, 10.x-12.x Blackwell (10.0 B200,
// 10.3 B300, 12.0 RTX Blackwell).
func architectureFromCC(major, minor int) (Architecture, bool) {
	switch {
	case major == 3:
		return Kepler, true
	case major == 5:
		return Maxwell, true
	case major == 6:
		return Pascal, true
	case major == 7 && minor < 5:
		return Volta, true
	case major == 7:
		return Turing, true
	case major == 8 && minor < 9:
		return Ampere, true
	case major == 8:
		return Ada, true
	case major == 9:
		return Hopper, true
	case major >= 10 && major <= 12:
		return Blackwell, true
	}
	return Unknown, false
}

// Series is one NVIDIA driver branch and the generations it drives.
type Series struct {
	Branch int    `json:"branch"`
	Kind   string `json:"kind"`
	// Oldest and Newest bound the generations the branch supports.
	Oldest Architecture `json:"oldest"`
	Newest Architecture `json:"newest"`
}

// Supports reports whether the branch drives a.
func (s Series) Supports(a Architecture) bool {
	r := a.rank()
	return r >= 0 && r >= s.Oldest.rank() && r <= s.Newest.rank()
}

// DriverSeries is what the appliance knows about NVIDIA's data-centre
// driver branches, oldest first. Debian trixie ships 550 (nvidia-driver,
// nvidia-open-kernel-dkms) and 535 (nvidia-tesla-535-*); 570 is the first
// production branch with Blackwell (B200, GB200); 580 is the last that
// drives Maxwell, Pascal and Volta. Kepler ended with 470, so no branch
// here drives it.
var DriverSeries = []Series{
	{Branch: 535, Kind: "production branch (long-term support)", Oldest: Maxwell, Newest: Hopper},
	{Branch: 550, Kind: "production branch", Oldest: Maxwell, Newest: Hopper},
	{Branch: 570, Kind: "production branch", Oldest: Maxwell, Newest: Blackwell},
	{Branch: 580, Kind: "production branch (long-term support)", Oldest: Maxwell, Newest: Blackwell},
}

// seriesFor returns the table row that speaks for branch: the newest known
// branch at or below it (a 560 feature branch knows what 550 knows, not
// what 570 added). ok is false for a branch older than every row.
func seriesFor(branch int) (Series, bool) {
	var s Series
	found := false
	for _, row := range DriverSeries {
		if row.Branch <= branch {
			s, found = row, true
		}
	}
	return s, found
}

// minBranch is the first known branch that drives a, or 0.
func minBranch(a Architecture) int {
	for _, row := range DriverSeries {
		if row.Supports(a) {
			return row.Branch
		}
	}
	return 0
}

// ModuleFlavour is which NVIDIA kernel modules are loaded.
type ModuleFlavour string

// The flavours; "" is not known (the module is not loaded).
const (
	OpenModules        ModuleFlavour = "open"
	ProprietaryModules ModuleFlavour = "proprietary"
)

// OpenPolicy is what a generation needs from the kernel modules.
type OpenPolicy string

// The policies.
const (
	// OpenUnsupported: before Turing there is no GSP, which the open
	// modules need; only the proprietary ones drive the GPU.
	OpenUnsupported OpenPolicy = "unsupported"
	// OpenAllowed: Turing to Hopper run either; NVIDIA recommends open.
	OpenAllowed OpenPolicy = "allowed"
	// OpenRequired: Blackwell and later run only the open modules.
	OpenRequired OpenPolicy = "required"
)

// OpenModulePolicy returns what a needs from the kernel modules.
func OpenModulePolicy(a Architecture) OpenPolicy {
	switch r := a.rank(); {
	case r < 0:
		return OpenRequired // an unknown GPU is newer than the table
	case r < Turing.rank():
		return OpenUnsupported
	case r < Blackwell.rank():
		return OpenAllowed
	}
	return OpenRequired
}

// ChooseModules picks the kernel modules for a machine's GPUs (the image
// build and the sysext pick by this): open whenever every GPU allows it,
// proprietary when one predates Turing. A machine that mixes a pre-Turing
// GPU with one that requires open modules has no single choice.
func ChooseModules(archs []Architecture) (ModuleFlavour, error) {
	var old, needOpen Architecture
	for _, a := range archs {
		switch OpenModulePolicy(a) {
		case OpenUnsupported:
			old = a
		case OpenRequired:
			needOpen = a
		}
	}
	switch {
	case old != "" && needOpen != "":
		return "", fmt.Errorf("%w: %s needs the proprietary kernel modules and %s the open ones; one machine cannot load both", ErrUnsupported, old, needOpen)
	case old != "":
		return ProprietaryModules, nil
	}
	return OpenModules, nil
}

// Generation is what the driver check needs to know about one GPU.
type Generation struct {
	Index        int
	Name         string
	Architecture Architecture
}

func (g Generation) label() string {
	if g.Name == "" {
		return fmt.Sprintf("GPU %d", g.Index)
	}
	return fmt.Sprintf("GPU %d (%s)", g.Index, quote(g.Name))
}

// CheckDriver judges whether the driver version (NVML's, "550.54.15")
// with the loaded module flavour ("" when not known) drives g. It returns
// nil or a *DriverError (wrapping ErrUnsupported) whose Reason names the
// branch needed, so that "B200 on 550" reads as exactly that rather than
// as a generic driver error.
func CheckDriver(driverVersion string, flavour ModuleFlavour, g Generation) error {
	fail := func(format string, args ...any) error {
		return &DriverError{Device: g.label(), Architecture: g.Architecture, DriverVersion: driverVersion, Reason: fmt.Sprintf(format, args...)}
	}
	branch, err := DriverBranch(driverVersion)
	if err != nil {
		return fail("%v", err)
	}
	row, known := seriesFor(branch)
	if !known {
		return fail("driver branch %d is older than every branch this appliance knows (%s)", branch, knownBranches())
	}
	if !row.Supports(g.Architecture) {
		return fail("%s", unsupportedReason(g.Architecture, branch, row))
	}
	switch OpenModulePolicy(g.Architecture) {
	case OpenUnsupported:
		if flavour == OpenModules {
			return fail("%s GPUs do not run on the open kernel modules; load the proprietary ones", g.Architecture)
		}
	case OpenRequired:
		if flavour == ProprietaryModules {
			return fail("%s GPUs run only on the open kernel modules; the proprietary ones are loaded", g.Architecture)
		}
	}
	return nil
}

func unsupportedReason(a Architecture, branch int, row Series) string {
	if a == Unknown || a.rank() < 0 {
		return fmt.Sprintf("the GPU's generation is unknown; no driver branch this appliance knows (%s) is known to drive it", knownBranches())
	}
	if a.rank() > row.Newest.rank() {
		if m := minBranch(a); m > 0 {
			return fmt.Sprintf("%s needs driver branch %d or later; branch %d drives %s to %s", a, m, branch, row.Oldest, row.Newest)
		}
		return fmt.Sprintf("%s is newer than every driver branch this appliance knows (%s)", a, knownBranches())
	}
	return fmt.Sprintf("%s is no longer driven by branch %d (it drives %s to %s)", a, branch, row.Oldest, row.Newest)
}

func knownBranches() string {
	var s []string
	for _, row := range DriverSeries {
		s = append(s, strconv.Itoa(row.Branch))
	}
	return strings.Join(s, ", ")
}

// DriverBranch reads the branch (the first number) of a driver version
// such as "550.163.01" as NVML or /proc/driver/nvidia/version give it.
func DriverBranch(version string) (int, error) {
	if version == "" {
		return 0, fmt.Errorf("%w: the driver version is unknown", ErrInvalid)
	}
	if len(version) > 64 {
		return 0, fmt.Errorf("%w: driver version %s is longer than 64 bytes", ErrInvalid, quote(version[:64]))
	}
	major, rest, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if err != nil || n <= 0 || n > 9999 || strings.ContainsFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }) {
		return 0, fmt.Errorf("%w: %s is not an NVIDIA driver version (such as 550.163.01)", ErrInvalid, quote(version))
	}
	return n, nil
}

// maxVersionFile bounds /proc/driver/nvidia/version: two lines of about
// 100 bytes each.
const maxVersionFile = 4 << 10

// ParseKernelModuleVersion reads /proc/driver/nvidia/version, whose first
// line names the flavour and version of the loaded kernel module:
//
//	NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024
//	NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build ...
//
// It returns the version and the flavour, or an error naming what is
// wrong with the line.
func ParseKernelModuleVersion(b []byte) (version string, flavour ModuleFlavour, err error) {
	if len(b) > maxVersionFile {
		return "", "", fmt.Errorf("%w: the driver version file is larger than %d bytes", ErrInvalid, maxVersionFile)
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "NVRM version:")
		if !ok {
			continue
		}
		head, tail, ok := strings.Cut(rest, "Kernel Module")
		if !ok {
			return "", "", fmt.Errorf("%w: NVRM line %s names no kernel module", ErrInvalid, quote(shorten(line)))
		}
		flavour = ProprietaryModules
		if strings.Contains(head, " Open ") {
			flavour = OpenModules
		}
		f := strings.Fields(tail)
		if len(f) > 0 && f[0] == "for" { // the open module puts "for x86_64" after it
			f = f[min(2, len(f)):]
		}
		if len(f) == 0 {
			return "", "", fmt.Errorf("%w: NVRM line %s has no version", ErrInvalid, quote(shorten(line)))
		}
		if _, err := DriverBranch(f[0]); err != nil {
			return "", "", fmt.Errorf("reading the NVRM line: %w", err)
		}
		return f[0], flavour, nil
	}
	return "", "", fmt.Errorf("%w: no \"NVRM version:\" line", ErrNotFound)
}

func shorten(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

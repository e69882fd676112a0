package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
)

func TestCheckDriver(t *testing.T) {
	b200 := Generation{Index: 0, Name: "NVIDIA B200 180GB HBM3e", Architecture: Blackwell}
	h100 := Generation{Index: 2, Name: "NVIDIA H100 80GB HBM3", Architecture: Hopper}
	for _, tc := range []struct {
		name    string
		version string
		flavour ModuleFlavour
		gpu     Generation
		wantErr string // "" passes
	}{
		{"H100 on 550 proprietary", "550.54.15", ProprietaryModules, h100, ""},
		{"H100 on 550 open", "550.163.01", OpenModules, h100, ""},
		{"H100 on 535", "535.247.01", "", h100, ""},
		{"H200 on 550", "550.163.01", OpenModules, Generation{Name: "NVIDIA H200 141GB HBM3e", Architecture: Hopper}, ""},
		{"B200 on 550", "550.163.01", OpenModules, b200,
			"GPU 0 (NVIDIA B200 180GB HBM3e): blackwell needs driver branch 570 or later; branch 550 drives maxwell to hopper (installed driver 550.163.01)"},
		{"B200 on the 560 feature branch", "560.28.03", "", b200, "blackwell needs driver branch 570 or later; branch 560 drives maxwell to hopper"},
		{"B200 on 570 open", "570.133.20", OpenModules, b200, ""},
		{"B200 on 570 proprietary", "570.133.20", ProprietaryModules, b200, "blackwell GPUs run only on the open kernel modules"},
		{"V100 on 550 proprietary", "550.163.01", ProprietaryModules, Generation{Architecture: Volta}, ""},
		{"V100 on 550 open", "550.163.01", OpenModules, Generation{Index: 1, Architecture: Volta}, "GPU 1: volta GPUs do not run on the open kernel modules"},
		{"T4 on 550 open", "550.163.01", OpenModules, Generation{Architecture: Turing}, ""},
		{"K80 on 535", "535.247.01", "", Generation{Architecture: Kepler}, "kepler is no longer driven by branch 535 (it drives maxwell to hopper)"},
		{"Rubin on 580", "580.65.06", OpenModules, Generation{Architecture: Rubin}, "rubin is newer than every driver branch this appliance knows (535, 550, 570, 580)"},
		{"unknown generation", "550.163.01", "", Generation{Architecture: Unknown}, "the GPU's generation is unknown"},
		{"driver older than the table", "470.256.02", "", h100, "driver branch 470 is older than every branch this appliance knows"},
		{"no version", "", "", h100, "the driver version is unknown"},
		{"not a version", "55x.1", "", h100, "is not an NVIDIA driver version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDriver(tc.version, tc.flavour, tc.gpu)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckDriver = %v, want pass", err)
				}
				return
			}
			var de *DriverError
			if !errors.As(err, &de) || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckDriver = %v, want a *DriverError containing %q", err, tc.wantErr)
			}
		})
	}
}

// The DGX mocks through the same path the CDI generation uses: NVML's
// architecture and driver version, then the table.
func TestCheckDriverOnMocks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lib     nvml.Interface
		version string // replaces the mock's
		fail    int
		reason  string
	}{
		{"dgx h100 on its 550", newDGX(dgxh100.New(), nil), "", 0, ""},
		{"dgx h200 on its 550", newDGX(dgxh200.New(), nil), "", 0, ""},
		{"dgx b200 on its 560", newDGX(dgxb200.New(), nil), "", 8, "blackwell needs driver branch 570 or later; branch 560"},
		{"dgx b200 on debian's 550", withDriver(newDGX(dgxb200.New(), nil), "550.163.01"), "", 8, "blackwell needs driver branch 570 or later; branch 550"},
		{"dgx b200 on 570", withDriver(newDGX(dgxb200.New(), nil), "570.133.20"), "", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := inventoryOf(t, tc.lib)
			fails := 0
			for _, g := range inv.Generations() {
				if err := CheckDriver(inv.DriverVersion, OpenModules, g); err != nil {
					fails++
					if !strings.Contains(err.Error(), tc.reason) {
						t.Errorf("%v, want %q", err, tc.reason)
					}
				}
			}
			if fails != tc.fail || len(inv.Generations()) != 8 {
				t.Errorf("%d of %d GPUs failed, want %d", fails, len(inv.Generations()), tc.fail)
			}
		})
	}
}

func withDriver(d *dgx, v string) *dgx {
	d.DriverVersion = v
	return d
}

func TestArchitectureOf(t *testing.T) {
	for _, tc := range []struct {
		arch         nvml.DeviceArchitecture
		major, minor int
		want         Architecture
		ok           bool
	}{
		{nvml.DEVICE_ARCH_HOPPER, 9, 0, Hopper, true},
		{nvml.DEVICE_ARCH_BLACKWELL, 10, 0, Blackwell, true},
		{nvml.DEVICE_ARCH_UNKNOWN, 10, 0, Blackwell, true}, // an NVML older than the GPU
		{nvml.DEVICE_ARCH_UNKNOWN, 12, 0, Blackwell, true},
		{nvml.DeviceArchitecture(42), 8, 9, Ada, true},
		{nvml.DEVICE_ARCH_UNKNOWN, 8, 6, Ampere, true},
		{nvml.DEVICE_ARCH_UNKNOWN, 7, 5, Turing, true},
		{nvml.DEVICE_ARCH_UNKNOWN, 7, 0, Volta, true},
		{nvml.DEVICE_ARCH_UNKNOWN, 13, 0, Unknown, false},
	} {
		if got, ok := ArchitectureOf(tc.arch, tc.major, tc.minor); got != tc.want || ok != tc.ok {
			t.Errorf("ArchitectureOf(%d, %d.%d) = %s, %v; want %s, %v", tc.arch, tc.major, tc.minor, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpenModules(t *testing.T) {
	want := map[Architecture]OpenPolicy{
		Kepler: OpenUnsupported, Maxwell: OpenUnsupported, Pascal: OpenUnsupported, Volta: OpenUnsupported,
		Turing: OpenAllowed, Ampere: OpenAllowed, Ada: OpenAllowed, Hopper: OpenAllowed,
		Blackwell: OpenRequired, Rubin: OpenRequired, Unknown: OpenRequired,
	}
	for a, p := range want {
		if got := OpenModulePolicy(a); got != p {
			t.Errorf("OpenModulePolicy(%s) = %s, want %s", a, got, p)
		}
	}
	for _, tc := range []struct {
		archs []Architecture
		want  ModuleFlavour
		err   bool
	}{
		{[]Architecture{Hopper, Hopper}, OpenModules, false},
		{[]Architecture{Blackwell}, OpenModules, false},
		{[]Architecture{Volta, Ampere}, ProprietaryModules, false},
		{nil, OpenModules, false},
		{[]Architecture{Pascal, Blackwell}, "", true},
	} {
		got, err := ChooseModules(tc.archs)
		if got != tc.want || (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("ChooseModules(%v) = %q, %v", tc.archs, got, err)
		}
	}
}

func TestDriverSeriesTable(t *testing.T) {
	// The table is ordered, its rows' spans are real generations, and each
	// branch drives at least what the one before it newest drove.
	for i, s := range DriverSeries {
		if s.Oldest.rank() < 0 || s.Newest.rank() < s.Oldest.rank() {
			t.Errorf("row %d (%d): span %s..%s", i, s.Branch, s.Oldest, s.Newest)
		}
		if i > 0 && (s.Branch <= DriverSeries[i-1].Branch || s.Newest.rank() < DriverSeries[i-1].Newest.rank()) {
			t.Errorf("row %d (%d) is out of order", i, s.Branch)
		}
	}
	for _, b := range []int{535, 550, 570} {
		if s, ok := seriesFor(b); !ok || s.Branch != b {
			t.Errorf("no row for branch %d", b)
		}
	}
}

func TestParseKernelModuleVersion(t *testing.T) {
	for _, tc := range []struct {
		name, in, version string
		flavour           ModuleFlavour
		err               error
	}{
		{"proprietary", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
			"550.54.15", ProprietaryModules, nil},
		{"open", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Apr  8 04:52:56 UTC 2025\n",
			"550.163.01", OpenModules, nil},
		{"arm64 open", "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.133.20  Release Build\n", "570.133.20", OpenModules, nil},
		{"no NVRM line", "GCC version: 12\n", "", "", ErrNotFound},
		{"no module", "NVRM version: something else\n", "", "", ErrInvalid},
		{"no version", "NVRM version: NVIDIA UNIX Open Kernel Module for\n", "", "", ErrInvalid},
		{"not a version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  \x1b[2Jx  \n", "", "", ErrInvalid},
		{"too large", strings.Repeat("x", maxVersionFile+1), "", "", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, f, err := ParseKernelModuleVersion([]byte(tc.in))
			if v != tc.version || f != tc.flavour || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("= %q, %q, %v; want %q, %q, %v", v, f, err, tc.version, tc.flavour, tc.err)
			}
			if err != nil && strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("error not escaped: %q", err)
			}
		})
	}
}

package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
)

// complete gives NVIDIA's DGX mocks the answers they leave out (ECC, PCIe,
// temperature, power, persistence); a mock method without one panics, which
// is how these tests prove which calls the probe makes. Values are those of
// the real parts: SXM H100/H200 run PCIe gen 5 at 700 W, A100 gen 4 at 400 W.
func complete(s *server.Server) *server.Server {
	for _, d := range s.Devices {
		dev := d.(*server.Device)
		gen, watts := 4, uint32(400_000)
		if dev.Config.Architecture == nvml.DEVICE_ARCH_HOPPER {
			gen, watts = 5, 700_000
		}
		idx := dev.Index
		dev.GetEccModeFunc = func() (nvml.EnableState, nvml.EnableState, nvml.Return) {
			return nvml.FEATURE_ENABLED, nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return gen, nvml.SUCCESS }
		dev.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return 16, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(30 + idx), nvml.SUCCESS }
		dev.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) { return watts, nvml.SUCCESS }
		dev.GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_ENABLED, nvml.SUCCESS }
	}
	return s
}

func device(s *server.Server, i int) *server.Device { return s.Devices[i].(*server.Device) }

// The custom scenarios, each a mock.Interface the probe must survive.
func noLibrary() nvml.Interface {
	// Every other method is nil and panics: the probe may call Init only.
	return &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
}

func driverNotLoaded() nvml.Interface {
	return &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
}

func eccOff() nvml.Interface {
	s := complete(dgxh100.New())
	for _, i := range []int{2, 5} {
		device(s, i).GetEccModeFunc = func() (nvml.EnableState, nvml.EnableState, nvml.Return) {
			return nvml.FEATURE_DISABLED, nvml.FEATURE_DISABLED, nvml.SUCCESS
		}
	}
	return s
}

func migOn() nvml.Interface {
	s := complete(dgxa100.New())
	if ret, _ := device(s, 0).SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		panic(ret)
	}
	return s
}

func oldDriver() nvml.Interface {
	s, err := server.New(
		server.WithGPUs(gpus.Multiple(4, gpus.A100_SXM4_40GB)...),
		server.WithDriverVersion("470.256.02"),
		server.WithNVMLVersion("11.470.256.02"),
		server.WithCUDADriverVersion(11040),
	)
	if err != nil {
		panic(err)
	}
	return complete(s)
}

// failingMidEnumeration loses GPU 3 after GPU 2 answered, and GPU 5 fails
// its memory query: the probe must report both and every other GPU.
func failingMidEnumeration() nvml.Interface {
	s := complete(dgxh100.New())
	byIndex := s.DeviceGetHandleByIndexFunc
	s.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 3 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return byIndex(i)
	}
	device(s, 5).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_UNKNOWN }
	// Consumer-style answer: not supported is a fact, not an error.
	device(s, 6).GetPowerManagementLimitFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	return s
}

func TestGPUScenarios(t *testing.T) {
	root := t.TempDir()
	m := DefaultMatrix()
	for _, tc := range []struct {
		name      string
		lib       nvml.Interface
		summary   string
		devices   int
		driver    string
		check     func(t *testing.T, g GPU)
		profile   config.Profile
		wantCheck string // check id
		wantState Status
		wantIn    string // substring of its reason
	}{
		{name: "no library", lib: noLibrary(), summary: "no NVIDIA driver found",
			profile: config.ProfilePro, wantCheck: "gpu.count", wantState: StatusFail, wantIn: "no NVIDIA driver found; pro requires"},
		// The root has no PCI bus: a forced merge of the extension in a VM.
		{name: "driver not loaded", lib: driverNotLoaded(), summary: "NVIDIA driver installed, no NVIDIA GPU found",
			profile: config.ProfileUser, wantCheck: "gpu.count", wantState: StatusWarn,
			wantIn: "NVIDIA driver installed, no NVIDIA GPU found; user recommends at least one NVIDIA GPU"},
		{name: "dgx a100", lib: complete(dgxa100.New()), summary: "8 × Mock NVIDIA A100-SXM4-40GB", devices: 8, driver: "550.54.15",
			check: func(t *testing.T, g GPU) {
				d := g.Devices[0]
				if d.ComputeCapability != "8.0" || d.MemoryBytes != 40960<<20 || d.Architecture != "ampere" {
					t.Errorf("device 0 = %+v", d)
				}
			},
			profile: config.ProfileEnterprise, wantCheck: "gpu.memory", wantState: StatusWarn, wantIn: "GPU 0 memory: 40.0 GiB, below the recommended 80.0 GiB"},
		{name: "dgx h100", lib: complete(dgxh100.New()), summary: "8 × NVIDIA H100 80GB HBM3", devices: 8, driver: "550.54.15",
			check: func(t *testing.T, g GPU) {
				d := g.Devices[7]
				if d.ComputeCapability != "9.0" || *d.PCIeGeneration != 5 || *d.PowerLimitW != 700 || !*d.ECC || *d.MIG || d.Index != 7 {
					t.Errorf("device 7 = %+v", d)
				}
				if g.NVML.CUDADriverVersion != "12.4" || g.NVML.NVMLVersion != "12.550.54.15" {
					t.Errorf("nvml = %+v", g.NVML)
				}
			},
			profile: config.ProfilePro, wantCheck: "gpu.compute_capability", wantState: StatusPass, wantIn: "9.0, meets the recommended 8.0"},
		{name: "dgx h200", lib: complete(dgxh200.New()), devices: 8, driver: "550.54.15",
			check: func(t *testing.T, g GPU) {
				if !strings.Contains(g.Devices[0].Name, "H200") || g.Devices[0].MemoryBytes < 140<<30 {
					t.Errorf("device 0 = %+v", g.Devices[0])
				}
			},
			profile: config.ProfileEnterprise, wantCheck: "gpu.ecc", wantState: StatusPass, wantIn: "ECC is on on every GPU"},
		{name: "ecc off", lib: eccOff(), devices: 8,
			profile: config.ProfileEnterprise, wantCheck: "gpu.ecc", wantState: StatusFail, wantIn: "ECC is off on GPU 2, 5; enterprise requires it on"},
		{name: "mig on", lib: migOn(), devices: 8,
			check: func(t *testing.T, g GPU) {
				if !*g.Devices[0].MIG || *g.Devices[1].MIG {
					t.Errorf("MIG = %v, %v", *g.Devices[0].MIG, *g.Devices[1].MIG)
				}
			},
			profile: config.ProfilePro, wantCheck: "gpu.mig", wantState: StatusWarn, wantIn: "MIG mode is enabled on GPU 0; pro recommends it disabled"},
		{name: "old driver", lib: oldDriver(), devices: 4, driver: "470.256.02",
			profile: config.ProfilePro, wantCheck: "gpu.driver", wantState: StatusFail, wantIn: "driver branch: 470 (470.256.02), below the pro minimum of 535"},
		{name: "device failing mid-enumeration", lib: failingMidEnumeration(), devices: 8,
			summary: "7 × NVIDIA H100 80GB HBM3; 2 of 8 GPUs failed to answer",
			check: func(t *testing.T, g GPU) {
				if g.Devices[3].Name != "" || len(g.Devices[3].Errors) != 1 || !strings.Contains(g.Devices[3].Errors[0], "ERROR_GPU_IS_LOST") {
					t.Errorf("device 3 = %+v", g.Devices[3])
				}
				if g.Devices[4].Name == "" || len(g.Devices[4].Errors) != 0 {
					t.Errorf("device 4 after the lost one = %+v", g.Devices[4])
				}
				if d := g.Devices[5]; d.Name == "" || len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0], "memory:") {
					t.Errorf("device 5 = %+v", d)
				}
				if d := g.Devices[6]; d.PowerLimitW != nil || len(d.Errors) != 0 {
					t.Errorf("device 6, power not supported = %+v", d)
				}
			},
			profile: config.ProfilePro, wantCheck: "gpu.3.health", wantState: StatusWarn, wantIn: "GPU 3 did not answer: getting the device handle: ERROR_GPU_IS_LOST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p problems
			g := probeGPU(tc.lib, testReader(t, root), &p)
			if tc.summary != "" && g.Summary != tc.summary {
				t.Errorf("summary = %q, want %q", g.Summary, tc.summary)
			}
			if len(g.Devices) != tc.devices {
				t.Errorf("%d devices, want %d", len(g.Devices), tc.devices)
			}
			if tc.driver != "" && g.NVML.DriverVersion != tc.driver {
				t.Errorf("driver = %q, want %q", g.NVML.DriverVersion, tc.driver)
			}
			if tc.devices > 0 {
				for _, d := range g.Devices {
					if len(d.Errors) == 0 && !strings.HasPrefix(d.UUID, "GPU-") {
						t.Errorf("device %d UUID = %q", d.Index, d.UUID)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, g)
			}
			v := Evaluate(&Result{GPU: g}, m, tc.profile)
			c, ok := findCheck(v, tc.wantCheck)
			if !ok {
				t.Fatalf("no check %s in %+v", tc.wantCheck, v.Checks)
			}
			if c.Status != tc.wantState || !strings.Contains(c.Reason, tc.wantIn) {
				t.Errorf("%s = %s %q, want %s containing %q", c.ID, c.Status, c.Reason, tc.wantState, tc.wantIn)
			}
		})
	}
}

// A failed Init must be followed by nothing, not even Shutdown.
func TestNoNVMLCallAfterFailedInit(t *testing.T) {
	calls := 0
	lib := &mock.Interface{
		InitFunc:     func() nvml.Return { calls++; return nvml.ERROR_LIBRARY_NOT_FOUND },
		ShutdownFunc: func() nvml.Return { t.Error("Shutdown called after a failed Init"); return nvml.SUCCESS },
	}
	var p problems
	g := probeGPU(lib, testReader(t, t.TempDir()), &p)
	if calls != 1 || g.NVML.Available || g.NVML.Error != "ERROR_LIBRARY_NOT_FOUND" {
		t.Errorf("calls=%d nvml=%+v", calls, g.NVML)
	}
}

// The real library on a machine without the NVIDIA driver must answer
// "no driver", not kill the test binary.
func TestRealNVMLWithoutDriver(t *testing.T) {
	var p problems
	g := probeGPU(nil, testReader(t, t.TempDir()), &p)
	if g.NVML.Available {
		t.Skipf("this machine has a working NVIDIA driver (%s); nothing to test", g.Summary)
	}
	if g.Summary == "" || g.NVML.Error == "" {
		t.Errorf("gpu = %+v", g)
	}
}

func findCheck(v Verdict, id string) (Check, bool) {
	for _, c := range v.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// TestProbeImageTreeStaysInside probes an image tree whose /var/run is an
// absolute symlink, as Debian's is. Before rootfs the probe joined paths
// onto the root and so read the build host's /run/cdi through it.
func TestProbeImageTreeStaysInside(t *testing.T) {
	mk := func(t *testing.T, p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in for the host's /run, outside the image, with a spec the
	// image must never report.
	host := t.TempDir()
	mk(t, filepath.Join(host, "run/cdi/host-gpu.yaml"), "cdiVersion: 0.6.0\nkind: host.example/gpu\n")
	for _, tc := range []struct {
		name, link string
		want       []string
	}{
		// The image's own /run: /var/run/cdi is the image's /run/cdi.
		{"link to the image's /run", "/run", []string{"/var/run/cdi/image-gpu.yaml"}},
		// A link naming a host path: inside the image it names nothing.
		{"link to a host path", filepath.Join(host, "run"), nil},
		{"relative link climbing out", "../../../../../../../../../../" + strings.TrimPrefix(filepath.Join(host, "run"), "/"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image := t.TempDir()
			mk(t, filepath.Join(image, "run/cdi/image-gpu.yaml"), "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\n")
			if err := os.MkdirAll(filepath.Join(image, "var"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.link, filepath.Join(image, "var/run")); err != nil {
				t.Fatal(err)
			}
			var p problems
			g := probeGPU(noLibrary(), testReader(t, image), &p)
			var got []string
			for _, s := range g.CDISpecs {
				if s.Kind == "host.example/gpu" {
					t.Errorf("read the host's spec through /var/run: %+v", s)
				}
				if strings.HasPrefix(s.Path, "/var/run/") {
					got = append(got, s.Path)
				}
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("specs under /var/run = %v, want %v (problems %v)", got, tc.want, p)
			}
		})
	}
}

// TestCDISpecBombIsRefused: a spec in /etc/cdi is read on every probe, by
// omertad and first boot. Nested aliases (a "billion laughs") or deep
// nesting must be refused in bounded time and memory, as a broken spec.
func TestCDISpecBombIsRefused(t *testing.T) {
	var laughs strings.Builder
	laughs.WriteString("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&laughs, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	laughs.WriteString("devices: *a9\n")
	for name, spec := range map[string]string{
		"aliases": laughs.String(),
		"nesting": "kind: nvidia.com/gpu\nx: " + strings.Repeat("[", 200<<10) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc/cdi"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "etc/cdi/bomb.yaml"), []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			done := make(chan GPU, 1)
			go func() {
				var p problems
				done <- probeGPU(noLibrary(), testReader(t, root), &p)
			}()
			select {
			case g := <-done:
				if len(g.CDISpecs) != 1 || g.CDISpecs[0].Error == "" || g.CDISpecs[0].Kind != "" {
					t.Errorf("specs = %+v, want one refused spec", g.CDISpecs)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the probe did not refuse the spec within 10 s")
			}
		})
	}
}

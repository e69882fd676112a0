package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var fixedNow = func() time.Time { return time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC) }

// fakeNetlink answers from fixed tables; interrupts makes the first dumps
// fail the way the kernel does when a table changes during the dump.
type fakeNetlink struct {
	links      []netlink.Link
	addrs      map[int][]netlink.Addr
	routes     []netlink.Route
	interrupts int
	calls      int
}

func (f *fakeNetlink) LinkList() ([]netlink.Link, error) {
	f.calls++
	if f.interrupts > 0 {
		f.interrupts--
		return f.links[:1], netlink.ErrDumpInterrupted // partial, must not be used
	}
	return f.links, nil
}

func (f *fakeNetlink) AddrList(l netlink.Link, _ int) ([]netlink.Addr, error) {
	return f.addrs[l.Attrs().Index], nil
}

func (f *fakeNetlink) RouteList(netlink.Link, int) ([]netlink.Route, error) { return f.routes, nil }

func mustCIDR(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

func link(index int, name, mac string, mtu int, state netlink.LinkOperState) netlink.Link {
	hw, _ := net.ParseMAC(mac)
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name, HardwareAddr: hw, MTU: mtu, OperState: state}}
}

// The network of each fixture, as `ip addr` and `ip route` showed it.
var fixtureNetworks = map[string]func() *fakeNetlink{
	"firecracker-epyc": func() *fakeNetlink {
		return &fakeNetlink{
			links: []netlink.Link{
				link(1, "lo", "", 65536, netlink.OperUnknown),
				link(2, "eth0", "02:fc:00:00:00:01", 1400, netlink.OperUp),
				link(3, "ifb0", "ae:3d:51:7e:20:1c", 1500, netlink.OperDown),
			},
			addrs: map[int][]netlink.Addr{
				1: {{IPNet: mustCIDR("127.0.0.1/8")}, {IPNet: mustCIDR("::1/128")}},
				2: {{IPNet: mustCIDR("192.0.2.2/24")}, {IPNet: mustCIDR("fd00::2/64")}},
			},
			routes: []netlink.Route{
				{LinkIndex: 2, Gw: net.ParseIP("192.0.2.1"), Family: netlink.FAMILY_V4},
				{LinkIndex: 2, Dst: mustCIDR("192.0.2.0/24"), Family: netlink.FAMILY_V4},
			},
		}
	},
	"dgx-h100-edited": func() *fakeNetlink {
		return &fakeNetlink{
			links: []netlink.Link{
				link(1, "lo", "", 65536, netlink.OperUnknown),
				link(2, "enp170s0f0", "a0:88:c2:12:34:56", 9000, netlink.OperUp),
				link(3, "enp170s0f1", "a0:88:c2:12:34:57", 1500, netlink.OperDown),
			},
			addrs: map[int][]netlink.Addr{
				2: {{IPNet: mustCIDR("10.20.0.15/16")}},
			},
			routes: []netlink.Route{
				{LinkIndex: 2, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: net.ParseIP("10.20.0.1"), Family: netlink.FAMILY_V4, Priority: 100},
			},
		}
	},
}

type fixture struct {
	name string
	lib  func() nvml.Interface
	// statfs replaces the measured state filesystem, which is the test
	// machine's and not the fixture's: the figures captured with it.
	freeGiB, totalGiB uint64
}

var fixtures = []fixture{
	{name: "firecracker-epyc", lib: noLibrary, freeGiB: 74, totalGiB: 252},
	{name: "dgx-h100-edited", lib: func() nvml.Interface { return complete(dgxh100.New()) }, freeGiB: 6500, totalGiB: 6985},
}

func probeFixture(t testing.TB, fx fixture) *Result {
	t.Helper()
	res, err := Run(context.Background(), Options{
		Root:       filepath.Join("testdata", fx.name),
		NVML:       fx.lib(),
		Netlink:    fixtureNetworks[fx.name](),
		Containerd: "-",
		Now:        fixedNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	res.Host.StateFS.FreeBytes = fx.freeGiB << 30
	res.Host.StateFS.TotalBytes = fx.totalGiB << 30
	return res
}

// maskUUIDs replaces the mocks' UUIDs, new on every run, by their position.
func maskUUIDs(res *Result) {
	for i := range res.GPU.Devices {
		if res.GPU.Devices[i].UUID != "" {
			res.GPU.Devices[i].UUID = "GPU-masked"
		}
	}
}

func TestGolden(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			res := probeFixture(t, fx)
			maskUUIDs(res)
			verdicts := map[config.Profile]Verdict{}
			for _, p := range config.Profiles {
				verdicts[p] = Evaluate(res, DefaultMatrix(), p)
			}
			golden(t, filepath.Join("testdata", fx.name, "probe.golden.json"), res)
			golden(t, filepath.Join("testdata", fx.name, "verdicts.golden.json"), verdicts)
		})
	}
}

func golden(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

// What the fixtures must say, checked by hand once, so that -update cannot
// silently bless a wrong reading.
func TestFixtureFacts(t *testing.T) {
	fc := probeFixture(t, fixtures[0])
	dgx := probeFixture(t, fixtures[1])
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"fc cpu", fc.Host.CPU.Model + "/" + fc.Host.CPU.Vendor, "AMD EPYC/AuthenticAMD"},
		{"fc topology", [3]int{fc.Host.CPU.Sockets, fc.Host.CPU.Cores, fc.Host.CPU.Threads}, [3]int{1, 2, 2}},
		{"fc avx512", strings.Contains(strings.Join(fc.Host.CPU.Flags, " "), "avx512f"), true},
		{"fc memory", fc.Host.Memory.TotalBytes, uint64(24684084) * 1024},
		{"fc disks", len(fc.Host.Disks), 1}, // vda; loop and zram are left out
		{"fc cgroup", fc.Host.Kernel.CgroupMode, "hybrid"},
		{"fc secure boot", fc.Host.Security.SecureBoot, "unsupported"},
		{"fc virt", fc.Host.Virtualization.Kind + "/" + fc.Host.Virtualization.Hypervisor, "vm/unknown"},
		{"fc gpu", fc.GPU.Summary, "no NVIDIA driver found"},
		{"fc speed", fc.Network.Links[0].SpeedMbps == nil, true}, // eth0 reports -1
		{"fc default route", fc.Network.DefaultRoutes[0].Gateway, "192.0.2.1"},
		{"dgx topology", [3]int{dgx.Host.CPU.Sockets, dgx.Host.CPU.Cores, dgx.Host.CPU.Threads}, [3]int{2, 8, 16}},
		{"dgx virt", dgx.Host.Virtualization.Kind, "bare-metal"},
		{"dgx cgroup", dgx.Host.Kernel.CgroupVersion, 2},
		{"dgx secure boot", dgx.Host.Security.SecureBoot, "enabled"},
		{"dgx tpm", dgx.Host.Security.TPM.Version, "2.0"},
		{"dgx iommu", dgx.Host.Security.IOMMU.Groups, 12},
		{"dgx disks", len(dgx.Host.Disks), 3},
		{"dgx nvme", dgx.Host.Disks[0].Rotational, false},
		{"dgx modules", strings.Join(dgx.GPU.KernelModules, ","), "nvidia,nvidia_drm,nvidia_modeset,nvidia_uvm"},
		{"dgx kernel driver", dgx.GPU.KernelDriverVersion, "550.54.15"},
		{"dgx kernel modules", dgx.GPU.KernelModuleFlavour, "proprietary"},
		{"dgx driver support", checkStatus(Evaluate(dgx, DefaultMatrix(), config.ProfileEnterprise), "gpu.driver_support"), StatusPass},
		{"dgx nodes", len(dgx.GPU.DeviceNodes), 12},
		{"dgx cdi", len(dgx.GPU.CDISpecs), 2},
		{"dgx cdi kind", dgx.GPU.CDISpecs[0].Kind, "nvidia.com/gpu"},
		{"dgx cdi broken", dgx.GPU.CDISpecs[1].Error != "", true},
		{"dgx speed", *dgx.Network.Links[0].SpeedMbps, 100000},
		{"dgx gpus", dgx.GPU.Summary, "8 × NVIDIA H100 80GB HBM3"},
		{"dgx enterprise", Evaluate(dgx, DefaultMatrix(), config.ProfileEnterprise).Status, StatusWarn}, // 16 threads, 32 recommended
	} {
		if !cmp.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func checkStatus(v Verdict, id string) Status {
	c, _ := findCheck(v, id)
	return c.Status
}

func TestRetryDumpInterrupted(t *testing.T) {
	f := fixtureNetworks["firecracker-epyc"]()
	f.interrupts = 2
	var p problems
	n := probeNetwork(f, testReader(t, t.TempDir()), &p)
	if len(n.Links) != 3 || f.calls != 3 || len(p) != 0 {
		t.Errorf("links=%d calls=%d problems=%v", len(n.Links), f.calls, p)
	}
	f = fixtureNetworks["firecracker-epyc"]()
	f.interrupts = dumpRetries
	p = nil
	probeNetwork(f, testReader(t, t.TempDir()), &p)
	if len(p) != 1 || !strings.Contains(p[0], "interrupted") {
		t.Errorf("problems = %v", p)
	}
}

func TestRunBadRoot(t *testing.T) {
	_, err := Run(context.Background(), Options{Root: filepath.Join(t.TempDir(), "missing"), Containerd: "-", NVML: noLibrary()})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

// An empty root is a machine that shows nothing: every unread fact is a
// problem line, and nothing panics.
func TestRunEmptyRoot(t *testing.T) {
	res, err := Run(context.Background(), Options{Root: t.TempDir(), Containerd: "-", NVML: noLibrary(), Netlink: &fakeNetlink{}})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(res.Problems, "\n")
	for _, want := range []string{"/proc/cpuinfo", "/proc/meminfo", "/proc/mounts"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems do not mention %s: %v", want, res.Problems)
		}
	}
	if v := Evaluate(res, DefaultMatrix(), config.ProfileUser); v.Status != StatusFail {
		t.Errorf("empty machine verdict = %s", v.Status)
	}
}

// testReader reads the directory dir as the probe's root.
func testReader(t *testing.T, dir string) *reader {
	t.Helper()
	r, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &reader{fs: r}
}

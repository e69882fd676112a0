package probe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/vishvananda/netlink"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestDriftFromFixtureChange probes a copy of the DGX fixture, changes the
// machine underneath (a GPU lost, the driver upgraded, memory shrunk, a NIC
// removed), probes again and expects exactly those drift events, in the
// store, in the audit log and over the API; a third, unchanged probe adds none.
func TestDriftFromFixtureChange(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.CopyFS(root, os.DirFS("testdata/dgx-h100-edited")); err != nil {
		t.Fatal(err)
	}
	gpus := complete(dgxh100.New())
	nl := fixtureNetworks["dgx-h100-edited"]()
	st := openStore(t)

	// First boot stores the baseline.
	first, err := Run(ctx, Options{Root: root, NVML: gpus, Netlink: nl, Containerd: "-", Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(ctx, st, first, true); err != nil {
		t.Fatal(err)
	}
	if err := Save(ctx, st, first, true); !errors.Is(err, ErrBaselineExists) {
		t.Errorf("second baseline: err = %v, want ErrBaselineExists", err)
	}

	mon := NewMonitor(st, WithProfile(config.ProfilePro),
		WithProbeOptions(Options{Root: root, NVML: gpus, Netlink: nl, Containerd: "-", Now: fixedNow}))
	if _, ev, err := mon.ProbeOnce(ctx); err != nil || len(ev) != 0 {
		t.Fatalf("unchanged machine: events %v, err %v", ev, err)
	}

	// The machine changes.
	lost := gpus.Devices[3].(interface{ GetUUID() (string, nvml.Return) })
	lostUUID, _ := lost.GetUUID()
	gpus.Devices = slices.Delete(gpus.Devices, 3, 4)
	gpus.DriverVersion = "570.133.20"
	meminfo := filepath.Join(root, "proc/meminfo")
	b, _ := os.ReadFile(meminfo)
	b = regexp.MustCompile(`MemTotal:\s+\d+ kB`).ReplaceAll(b, []byte("MemTotal:       1056783872 kB"))
	if err := os.WriteFile(meminfo, b, 0o644); err != nil {
		t.Fatal(err)
	}
	nl.links = slices.DeleteFunc(nl.links, func(l netlink.Link) bool { return l.Attrs().Name == "enp170s0f1" })

	_, ev, err := mon.ProbeOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range ev {
		kinds = append(kinds, e.Kind+" "+e.Subject)
	}
	want := []string{
		"gpu.lost GPU 3 (" + lostUUID + ")",
		"gpu.driver_changed nvidia driver",
		"memory.shrank memory",
		"nic.gone enp170s0f1",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("drift events:\n got %q\nwant %q", kinds, want)
	}

	// A lasting change is recorded once.
	if _, ev, err := mon.ProbeOnce(ctx); err != nil || len(ev) != 0 {
		t.Errorf("third probe: events %v, err %v", ev, err)
	}

	audit, err := st.AuditLog(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got := strings.Join(actions, ","); got != "probe.baseline,probe.drift,probe.drift,probe.drift,probe.drift" {
		t.Errorf("audit actions = %s", got)
	}
	if _, err := st.VerifyAudit(ctx); err != nil {
		t.Error(err)
	}

	checkQueries(t, mon)
}

// checkQueries checks what the API serves from the monitor after the
// fixture change of TestDriftFromFixtureChange.
func checkQueries(t *testing.T, mon *Monitor) {
	t.Helper()
	ctx := context.Background()
	cur, err := mon.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.BaselineID != 1 || cur.Probe.ID != 4 || cur.Verdict.Profile != config.ProfilePro || len(cur.Probe.Result.GPU.Devices) != 7 {
		t.Errorf("current: id %d baseline %d profile %s gpus %d", cur.Probe.ID, cur.BaselineID, cur.Verdict.Profile, len(cur.Probe.Result.GPU.Devices))
	}
	dv, err := mon.Drift(ctx, 2)
	if err != nil || len(dv) != 2 || dv[0].Kind != "nic.gone" || dv[0].ProbeID != 3 || dv[0].BaselineID != 1 {
		t.Errorf("drift = %+v, %v", dv, err)
	}
	for _, limit := range []int{0, -1, MaxDriftLimit + 1} {
		if _, err := mon.Drift(ctx, limit); err == nil {
			t.Errorf("Drift(%d) accepted", limit)
		}
	}
}

// Without a first-boot baseline the first probe the monitor stores is the
// reference, and Run stops cleanly with its context.
func TestMonitorWithoutBaseline(t *testing.T) {
	st := openStore(t)
	mon := NewMonitor(st, WithInterval(0), WithProbeOptions(Options{
		Root: "testdata/firecracker-epyc", NVML: noLibrary(), Netlink: fixtureNetworks["firecracker-epyc"](), Containerd: "-", Now: fixedNow,
	}))
	if _, err := mon.Current(context.Background()); !errors.Is(err, ErrNoProbe) {
		t.Fatalf("Current before any probe = %v, want ErrNoProbe", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mon.Run(ctx) }()
	for range 200 {
		if s, _ := Latest(context.Background(), st); s != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	cur, err := mon.Current(context.Background())
	if err != nil || cur.Probe.ID != 1 || cur.BaselineID != 1 || cur.Verdict.Status != StatusWarn {
		t.Errorf("current: %+v, %v", cur, err)
	}
	base, err := Baseline(context.Background(), st)
	if err != nil || base == nil || base.Baseline {
		t.Errorf("baseline = %+v, %v (want the first probe, not flagged)", base, err)
	}
}

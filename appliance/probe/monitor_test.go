package probe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/gofiber/fiber/v2"
	"github.com/vishvananda/netlink"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
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

	// The API.
	app := fiber.New()
	mon.Routes(app.Group("/api/v1"))
	var pv ProbeView
	getJSON(t, app, "/api/v1/probe", 200, &pv)
	if pv.BaselineID != 1 || pv.ProbeID != 4 || pv.Verdict.Profile != config.ProfilePro || len(pv.Result.GPU.Devices) != 7 {
		t.Errorf("probe view: id %d baseline %d profile %s gpus %d", pv.ProbeID, pv.BaselineID, pv.Verdict.Profile, len(pv.Result.GPU.Devices))
	}
	var dv DriftView
	getJSON(t, app, "/api/v1/probe/drift?limit=2", 200, &dv)
	if len(dv.Events) != 2 || dv.Events[0].Kind != "nic.gone" || dv.Events[0].ProbeID != 3 || dv.Events[0].BaselineID != 1 {
		t.Errorf("drift view = %+v", dv)
	}
	getJSON(t, app, "/api/v1/probe/drift?limit=0", 400, nil)
}

// Without a first-boot baseline the first probe the monitor stores is the
// reference, and Run stops cleanly with its context.
func TestMonitorWithoutBaseline(t *testing.T) {
	st := openStore(t)
	app := fiber.New()
	mon := NewMonitor(st, WithInterval(0), WithProbeOptions(Options{
		Root: "testdata/firecracker-epyc", NVML: noLibrary(), Netlink: fixtureNetworks["firecracker-epyc"](), Containerd: "-", Now: fixedNow,
	}))
	mon.Routes(app.Group("/api/v1"))
	getJSON(t, app, "/api/v1/probe", 404, nil)

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
	var pv ProbeView
	getJSON(t, app, "/api/v1/probe", 200, &pv)
	if pv.ProbeID != 1 || pv.BaselineID != 1 || pv.Verdict.Status != StatusWarn {
		t.Errorf("probe view: %d %d %s", pv.ProbeID, pv.BaselineID, pv.Verdict.Status)
	}
	base, err := Baseline(context.Background(), st)
	if err != nil || base == nil || base.Baseline {
		t.Errorf("baseline = %+v, %v (want the first probe, not flagged)", base, err)
	}
}

func getJSON(t *testing.T, app *fiber.App, path string, code int, v any) {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest("GET", path, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s = %d %s, want %d", path, resp.StatusCode, body, code)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
}

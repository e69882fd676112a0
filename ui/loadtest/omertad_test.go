package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot"
)

// The image the shipped sample-tool entry names, and a digest for it: the
// fake runtime pulls nothing, it only has to know the name.
const (
	toolRef    = "omertaos.local/agents/tool:0.1.0"
	fakeDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

// runOmertad is the omertad role: the daemon with cmd/omerta's wiring but
// for the container runtime, which is agents.FakeRuntime. Arguments come
// from the environment: the configuration file and first boot's root.
func runOmertad() error {
	cfg, err := config.Load(os.Getenv(envConfig))
	if err != nil {
		return err
	}
	root := os.Getenv(envRoot)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// OMERTA_LOAD_PPROF=FILE: omertad's CPU profile, for finding where
	// its time goes (go tool pprof FILE).
	if p := os.Getenv("OMERTA_LOAD_PPROF"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	schemas := []store.Schema{probe.Schema, firstboot.Schema, auth.Schema, agents.Schema, catalog.Schema}
	return daemon.Run(ctx, cfg, log, daemon.WithSchemas(schemas...), daemon.WithWiring(wiring(root)))
}

// fakeImages serves /images from the fake runtime; it imports nothing.
type fakeImages struct{ *agents.FakeRuntime }

func (fakeImages) ImportArchive(context.Context, string, ...runtime.ImportOption) ([]runtime.Image, error) {
	return nil, errors.New("the load test's omertad imports no images")
}

func wiring(root string) daemon.Wire {
	return func(d daemon.Deps) (daemon.Wiring, error) {
		a := d.Config.Agents
		rt := agents.NewFakeRuntime(a.LogDir, d.Now)
		rt.AddImage(runtime.Image{Name: toolRef, Digest: fakeDigest, Manifest: fakeDigest, Config: fakeDigest})
		cat := catalog.NewService(d.Store, a.CatalogDir, catalog.WithClock(d.Now))
		svc, err := agents.New(d.Store, rt, agents.WithLogger(d.Logger), agents.WithClock(d.Now),
			agents.WithStateDir(filepath.Join(d.Config.Daemon.StateDir, "agents")), agents.WithProfile(d.Config.Profile),
			agents.WithTelemetryInterval(a.TelemetryInterval))
		if err != nil {
			return daemon.Wiring{}, fmt.Errorf("agents: %w", err)
		}
		users, err := auth.New(auth.Options{Store: d.Store, RedeemSetupToken: auth.FirstbootRedeemer(root), Now: d.Now})
		if err != nil {
			return daemon.Wiring{}, fmt.Errorf("auth: %w", err)
		}
		mon := probe.NewMonitor(d.Store,
			probe.WithProbeOptions(probe.Options{StateDir: d.Config.Daemon.StateDir, Now: d.Now}),
			probe.WithInterval(d.Config.Probe.Interval), probe.WithProfile(d.Config.Profile), probe.WithLogger(d.Logger))
		rfs, err := rootfs.New(root)
		if err != nil {
			return daemon.Wiring{}, err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(svc.Collectors()...)
		return daemon.Wiring{
			Services: []daemon.Service{mon, svc},
			API: api.Deps{Probe: mon, Auth: users,
				Report: api.ReportFiles{Root: rfs, ReportPath: firstboot.ReportPath, PublicKeyPath: firstboot.SigningPubPath},
				Agents: api.AgentsDeps{Catalog: cat, Service: svc, Images: fakeImages{rt}, Events: svc.Bus(), Logs: svc,
					Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}},
		}, nil
	}
}

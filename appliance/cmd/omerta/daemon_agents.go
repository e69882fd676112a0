package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/containerd/containerd/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// agentSchemas are the agents domain's tables.
var agentSchemas = append([]store.Schema{agents.Schema, catalog.Schema}, gatewaySchemas...)

// agentsDir is where the agents' data directories live, inside omertad's
// state directory.
const agentsDir = "agents"

// containerdDialTimeout bounds one connection attempt to containerd and
// the delay between attempts. containerd's dialer waits this long for a
// socket that does not exist yet, and a call made meanwhile waits with it:
// the client's default, 10 s, would be each request's wait for a 503
// while containerd is down. A local socket answers in milliseconds.
const containerdDialTimeout = 2 * time.Second

// agentsWiring is what wireAgents builds: the daemon services, the
// agents API's handles, the policy service that admits the agents and
// the GPU service that gives them GPUs.
type agentsWiring struct {
	services []daemon.Service
	api      api.AgentsDeps
	policy   *policy.Service
	gpu      *gpu.Service
	// models are the gateway's models and whether each was enabled.
	models *modelGate
	// ui reaches agents' own UIs on the agents' network; nil without it.
	ui api.AgentUINetwork
}

// policyLoadTimeout bounds reading the policies and tenants at start.
const policyLoadTimeout = 30 * time.Second

// wireAgents builds the agents domain: the containerd client and runtime,
// the catalog, the policy service, the GPU service, the agents service
// (its reconciler runs as a daemon service) admitted by both, with its
// images' signatures verified against the signed registries
// (daemon_registry.go), the import of the bundled images, verified
// against the same registries as the API's imports, and /metrics.
//
// Nothing here waits for containerd. The client dials lazily and gRPC
// reconnects with backoff; while containerd does not answer, omertad
// serves, agents show the state "unknown", changes that need containerd
// answer 503, and the bundled import waits for it.
func wireAgents(d daemon.Deps) (agentsWiring, error) {
	a := d.Config.Agents
	cc, err := client.New(a.Containerd, client.WithTimeout(containerdDialTimeout))
	if err != nil {
		return agentsWiring{}, fmt.Errorf("containerd client for %s: %w", a.Containerd, err)
	}
	opts := []runtime.Option{runtime.WithNamespace(a.Namespace), runtime.WithLogDir(a.LogDir), runtime.WithRunDir(a.RunDir),
		runtime.WithLogger(d.Logger.With("service", "agents-runtime"))}
	if a.RuntimeRoot != "" {
		opts = append(opts, runtime.WithRuntimeRoot(a.RuntimeRoot))
	}
	agentsNet := newAgentNetwork(d) // nil unless gateway.enabled (daemon_gateway.go)
	opts = append(opts, agentsNet.runtimeOptions()...)
	rt, err := runtime.New(cc, opts...)
	if err != nil {
		cc.Close()
		return agentsWiring{}, fmt.Errorf("agent runtime: %w", err)
	}
	cat := catalog.NewService(d.Store, a.CatalogDir, catalog.WithClock(d.Now))
	logShipped(d, cat)
	// The two need each other: admission asks the agents service for the
	// deployed agents, the agents service asks admission before each
	// deploy. svc is set before anything can call Running: policy.New
	// does not, and the services start after the wiring returns.
	var svc *agents.Service
	pol, err := newPolicy(d, func(ctx context.Context) ([]policy.Request, error) { return svc.PolicyRequests(ctx) })
	if err != nil {
		cc.Close()
		return agentsWiring{}, err
	}
	// The same: the GPU service tells the agents service of drift and
	// telemetry, the agents service asks it for GPUs.
	gpus, err := newGPUService(d, rt, nil, func() *agents.Service { return svc })
	if err != nil {
		cc.Close()
		return agentsWiring{}, err
	}
	// One Verifier for the deploys (the agents service's ImageVerifier)
	// and the imports (the API's and the bundled ones).
	verifier := newRegistryVerifier(d)
	archives := archiveVerifier{verifier}
	svc, err = agents.New(d.Store, rt, agents.WithLogger(d.Logger), agents.WithClock(d.Now),
		agents.WithStateDir(filepath.Join(d.Config.Daemon.StateDir, agentsDir)), agents.WithProfile(d.Config.Profile),
		agents.WithTelemetryInterval(a.TelemetryInterval),
		agents.WithAdmitter(pol), agents.WithTaskLimiter(pol.NewTaskLimiter()), agents.WithCompliance(pol),
		agents.WithGPUs(gpus.Allocator(), gpus.Ready(), gpus.Status), agents.WithNetwork(agentsNet.readyFunc()),
		agents.WithImageVerifier(imageVerifier{verifier}))
	if err != nil {
		cc.Close()
		return agentsWiring{}, fmt.Errorf("agents: %w", err)
	}
	models := newModelGate(verifier, gpus, d.Store, d.Logger, d.Now)
	netServices := agentsNet.services(d, rt, func() *agents.Service { return svc }, pol, models)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	reg.MustRegister(svc.Collectors()...)
	reg.MustRegister(gpus.Collectors()...)
	reg.MustRegister(agentsNet.collectors()...)
	// The GPU service before the agents service, whose reconciler waits
	// for its first refresh.
	services := []daemon.Service{newBundledImport(a.BundledDir, runtimeImporter{rt}, archives, d.Store, d.Logger), gpus, svc}
	services = append(services, netServices...)
	return agentsWiring{services: services, policy: pol, gpu: gpus, models: models, ui: agentsNet.agentUI(), api: api.AgentsDeps{
		Catalog: cat, Service: svc, Images: rt, Archives: archives, Events: svc.Bus(), Logs: svc,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}}, nil
}

// newGPUService is the GPU service on the host: the CDI spec in its
// /var/run/cdi, the driver's files under /, the agents' cgroups from
// containerd for telemetry, refreshed at the probe's interval, with drift
// and telemetry handed to the agents service (agent, set before any
// service runs). lib is nil for the real NVML: on a machine without
// NVIDIA's driver its Init fails, nothing else is asked of it, and the
// service records why and idles.
func newGPUService(d daemon.Deps, rt *runtime.Runtime, lib nvml.Interface, agent func() *agents.Service) (*gpu.Service, error) {
	log := d.Logger.With("service", "gpu")
	svc, err := gpu.NewService(gpu.ServiceConfig{
		Root: rootfs.Host(), NVML: lib, CDI: gpu.CDIOptions{DriverRoot: "/"},
		Cgroups:           func(ctx context.Context) (map[string]string, error) { return rt.Cgroups(ctx, agents.LabelAgent) },
		RefreshInterval:   d.Config.Probe.Interval,
		TelemetryInterval: d.Config.Agents.TelemetryInterval,
		OnDrift: func(ctx context.Context, affected []gpu.Affected) {
			if err := agent().GPUDrift(ctx, affected); err != nil && ctx.Err() == nil {
				log.Error("flagging the agents whose GPUs drifted", "err", err)
			}
		},
		OnUsage: func(u gpu.Usage) { agent().PublishGPUUsage(u) },
		Logger:  log, Now: d.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("GPU service: %w", err)
	}
	return svc, nil
}

// newPolicy is the policy service on the daemon's store, under the
// configured profile's defaults; running lists the deployed agents.
func newPolicy(d daemon.Deps, running func(context.Context) ([]policy.Request, error)) (*policy.Service, error) {
	ctx, cancel := context.WithTimeout(context.Background(), policyLoadTimeout)
	defer cancel()
	pol, err := policy.New(ctx, policy.Options{Store: d.Store, Profile: d.Config.Profile, Now: d.Now, Running: running})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return pol, nil
}

// logShipped says what of the shipped catalog could not be read: a bad
// entry is skipped, never fatal.
func logShipped(d daemon.Deps, cat *catalog.Service) {
	if err := cat.LoadError(); err != nil {
		d.Logger.Warn("shipped agent catalog not read", "dir", cat.Dir(), "err", terminal.Escape(err.Error()))
	}
	for _, f := range cat.Shipped() {
		if f.OK() {
			continue
		}
		for _, p := range f.Problems {
			d.Logger.Warn("shipped catalog file refused", "file", terminal.Escape(f.Path), "problem", terminal.Escape(p.String()))
		}
		for _, e := range f.Entries {
			for _, p := range e.Problems {
				d.Logger.Warn("shipped catalog entry refused", "file", terminal.Escape(f.Path), "entry", terminal.Escape(e.Source),
					"problem", terminal.Escape(p.String()))
			}
		}
	}
}

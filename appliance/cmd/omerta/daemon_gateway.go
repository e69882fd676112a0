package main

// The agents' network and the model gateway inside omertad.
//
// When the site configuration enables it (gateway.enabled), omertad runs
// appliance/netpolicy's Manager (the bridge, a veth and default-deny
// nftables rules per gateway-mode container, the agents' resolver) and
// appliance/gateway's OpenAI-compatible endpoint on the bridge's address
// (gateway.port). The agents runtime joins each gateway-mode container's
// namespace to the network between creating its task and starting it
// (runtime.Network), and mounts the resolver's resolv.conf.
//
// Keys. The network knows containers ("<agent>-g<generation>": each
// generation its own address, so that a patch's new container and the old
// one never share or steal a link); the gateway and the policy know agents.
// agents.AgentOfContainer maps one to the other.
//
// Egress. At attach, a container's egress policy is the agent's effective
// policy (appliance/policy): the names every layer allows and the IPv4
// networks every layer allows, handed to netpolicy.SetPolicy before the
// container starts. By default (the profiles' egress: []) that is
// nothing: the agent reaches the model gateway and the resolver and
// nothing else. A destination is granted by a category's or tenant's
// policy (an agent's may only narrow it). A policy change reaches running
// agents within a second: the policy service swaps its snapshot on every
// change, and watchPolicies sets again each attached container's egress
// that now differs (netpolicy cuts what is no longer allowed at once).
//
// The local model backend. The echo model (image/agents/echo-model,
// catalog entry local-echo-model) is an agent in gateway mode like any
// other, so it reaches nothing either. The gateway reaches it on its
// address on the agents' network: a backend of the configuration that
// names an agent (gateway.backends[].agent and port) is dialled at the
// address netpolicy gave that agent's running container. The host's
// connections to agents pass netpolicy's rules (only what agents send is
// filtered; their answers are established traffic), while other agents
// cannot reach the backend at all (agent to agent is always rejected): the
// gateway, with its policy, budgets and usage records, is the only way to
// the model. Nothing is published on the host's own interfaces.
//
// Failure. The bridge and the rules need CAP_NET_ADMIN and nf_tables.
// When the network cannot start, omertad logs why once and goes on: the
// runtime and the agents service refuse gateway-mode agents with that
// reason (spec.network.mode unavailable), every other agent runs as before.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/gateway"
	"github.com/omertaos/omertaos/appliance/netpolicy"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// gatewaySchemas are the agents' network's and the gateway's tables.
var gatewaySchemas = []store.Schema{netpolicy.Schema, gateway.Schema}

// agentsNetNS is the network namespace the agents' network is made in:
// omertad's own (netns.None). Tests set one they made, so that the host's
// links and rules are never touched.
var agentsNetNS = netns.None()

// Timings of the agents' network.
const (
	// networkReadyWait bounds how long a create waits for the network's
	// start (milliseconds normally) before it is refused as not ready.
	networkReadyWait = 10 * time.Second
	// reattachRetry is the wait between attempts to re-attach the running
	// containers while containerd does not answer.
	reattachRetry = 5 * time.Second
	// policyPoll is how often the policies' snapshot is compared.
	policyPoll = time.Second
	// gatewayGrace is what requests in flight get when omertad stops.
	gatewayGrace = 5 * time.Second
	// agentInfoTTL bounds how stale an agent's tenant and category may be
	// for the gateway (they change only by a patch).
	agentInfoTTL = 10 * time.Second
	maxAgentInfo = 4096
	// maxSecretBytes bounds a backend credential file.
	maxSecretBytes = 8 << 10
)

// agentHostSuffix ends the host name of a backend served by an agent in
// the registry the gateway is given ("local-echo-model.agent.omerta");
// the gateway's dialer maps it to the agent's address. Only the agents the
// configuration names are mapped.
const agentHostSuffix = ".agent.omerta"

// agentInfo is what the gateway and the network need of an agent.
type agentInfo struct {
	tenant, category string
	quotas           policy.Quotas // the tenant's (its monthly budgets are the gateway's)
	expires          time.Time
}

// agentDirectory caches agents' tenants and categories: the gateway asks
// on every request.
type agentDirectory struct {
	svc    func() *agents.Service
	tenant func(ctx context.Context, name string) (policy.Tenant, error) // nil: no quotas
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]agentInfo
}

func (d *agentDirectory) get(ctx context.Context, agent string) (agentInfo, error) {
	now := d.now()
	d.mu.Lock()
	if i, ok := d.m[agent]; ok && now.Before(i.expires) {
		d.mu.Unlock()
		return i, nil
	}
	d.mu.Unlock()
	a, err := d.svc().Get(ctx, agent)
	if err != nil {
		return agentInfo{}, err
	}
	i := agentInfo{tenant: a.Tenant, expires: now.Add(agentInfoTTL)}
	if a.Manifest != nil {
		i.category = a.Manifest.Metadata.Category
	}
	if d.tenant != nil {
		t, err := d.tenant(ctx, a.Tenant)
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			return agentInfo{}, err
		}
		i.quotas = t.Quotas
	}
	d.mu.Lock()
	if len(d.m) >= maxAgentInfo {
		d.m = map[string]agentInfo{}
	}
	d.m[agent] = i
	d.mu.Unlock()
	return i, nil
}

// gatewayService runs the agents' network and the model gateway. It never
// fails omertad: what does not work is logged and gateway mode refused.
type gatewayService struct {
	net *agentNetwork
	rt  *runtime.Runtime
	gw  *gateway.Gateway // nil when it could not be built
	// reg is the gateway's registry with every model enabled; models
	// enables those that verify (daemon_models.go) before it serves.
	reg    *gateway.Registry
	models *modelGate
	log    *slog.Logger
	// policies is the policy service's current snapshot, replaced (a new
	// pointer) by every change: watchPolicies compares it.
	policies func() *policy.Set
}

// services are the daemon services of the agents' network (none without
// one). svc is the agents service, set before any service runs; models
// decides which of the gateway's models are enabled.
func (n *agentNetwork) services(d daemon.Deps, rt *runtime.Runtime, svc func() *agents.Service, pol *policy.Service, models *modelGate) []daemon.Service {
	if n == nil {
		return nil
	}
	dir := &agentDirectory{svc: svc, tenant: pol.Tenant, now: d.Now, m: map[string]agentInfo{}}
	n.egress = func(ctx context.Context, agent string) (netpolicy.Egress, error) {
		i, err := dir.get(ctx, agent)
		if err != nil {
			return netpolicy.Egress{}, err
		}
		return egressOf(pol.Effective(agent, i.category, i.tenant)), nil
	}
	s := &gatewayService{net: n, rt: rt, log: n.log, policies: pol.Set, models: models}
	gw, reg, err := newGateway(d, n, dir, pol)
	if err != nil {
		n.log.Error("the model gateway is not served", "err", terminal.Escape(err.Error()))
	}
	s.gw, s.reg, n.gw = gw, reg, gw
	return []daemon.Service{s}
}

// collectors are the gateway's metrics for /metrics (none without it).
func (n *agentNetwork) collectors() []prometheus.Collector {
	if n == nil || n.gw == nil {
		return nil
	}
	return n.gw.Collectors()
}

// Name is the daemon service's name.
func (s *gatewayService) Name() string { return "gateway" }

// Run starts the network, attaches the running containers again, serves
// the gateway, and stops it all when ctx ends (the kernel state stays:
// agents keep their network while omertad restarts).
func (s *gatewayService) Run(ctx context.Context) error {
	if err := s.net.start(ctx); err != nil {
		s.log.Error("the agents' network is unavailable; agents in network mode gateway are refused, other agents are unaffected",
			"err", terminal.Escape(err.Error()))
		<-ctx.Done()
		return nil
	}
	defer s.net.mgr.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		s.reattach(ctx)
		s.watchPolicies(ctx)
	})
	if s.gw != nil {
		if s.models != nil {
			s.gw.SetRegistry(s.models.enable(ctx, s.reg))
		}
		wg.Go(func() {
			if err := s.gw.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("writing the gateway's usage", "err", err)
			}
		})
		wg.Go(func() { s.serve(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (s *gatewayService) serve(ctx context.Context) {
	addr := netip.AddrPortFrom(s.net.mgr.Gateway(), uint16(s.net.cfg.Port)).String()
	var ln net.Listener
	err := inNetns(s.net.ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		s.log.Error("the model gateway cannot listen", "addr", addr, "err", err)
		return
	}
	s.log.Info("model gateway serving", "addr", addr)
	if err := s.gw.Serve(ctx, ln, gatewayGrace); err != nil && ctx.Err() == nil {
		s.log.Error("the model gateway stopped", "err", err)
	}
}

// reattach attaches the running gateway-mode containers again (retrying
// while containerd does not answer), then has the network forget the
// containers that are gone.
func (s *gatewayService) reattach(ctx context.Context) {
	for {
		ids, err := s.rt.ReattachNetwork(ctx)
		if errors.Is(err, runtime.ErrUnavailable) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(reattachRetry):
				continue
			}
		}
		if err != nil {
			s.log.Warn("re-attaching agents to their network", "err", terminal.Escape(err.Error()))
		}
		if ids == nil && err != nil {
			return // the list failed: forgetting containers on it would be wrong
		}
		if err := s.net.reconcile(ctx, ids); err != nil && ctx.Err() == nil {
			s.log.Warn("reconciling the agents' network", "err", err)
		}
		return
	}
}

// watchPolicies applies a policy change to the running agents: each
// second, when the policies' snapshot is a new one, every attached
// container's egress is computed again and set where it changed
// (netpolicy then cuts what is no longer allowed at once).
func (s *gatewayService) watchPolicies(ctx context.Context) {
	last := s.policies()
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if cur := s.policies(); cur != last {
			last = cur
			if n, err := s.net.resync(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("applying a policy change to the agents' network", "err", terminal.Escape(err.Error()))
			} else if n > 0 {
				s.log.Info("policy change applied to running agents' egress", "containers", n)
			}
		}
	}
}

// newGateway builds the model gateway: its registry from the site's
// backends (returned too, every model enabled, while the gateway is given
// it with every model disabled until they are verified), agents
// identified by their address on the network, their rules from the policy
// service, credentials from files.
func newGateway(d daemon.Deps, n *agentNetwork, dir *agentDirectory, pol *policy.Service) (*gateway.Gateway, *gateway.Registry, error) {
	reg, err := gatewayRegistry(n.cfg)
	if err != nil {
		return nil, nil, err
	}
	unverified := map[string]string{}
	for _, m := range reg.Models() {
		unverified[m] = "its manifest is not verified yet"
	}
	id := gateway.IdentifierFunc(func(a netip.Addr) (gateway.AgentRef, bool) {
		ctr, ok := n.mgr.AgentByAddr(a)
		if !ok {
			return gateway.AgentRef{}, false
		}
		agent, _, ok := agents.AgentOfContainer(ctr)
		if !ok {
			return gateway.AgentRef{}, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		i, err := dir.get(ctx, agent)
		if err != nil {
			return gateway.AgentRef{}, false
		}
		return gateway.AgentRef{ID: agent, Tenant: i.tenant}, true
	})
	rules := gateway.PolicyFunc(func(ctx context.Context, a gateway.AgentRef) (gateway.Rules, error) {
		i, err := dir.get(ctx, a.ID)
		if err != nil {
			return gateway.Rules{}, err
		}
		return rulesOf(pol.Effective(a.ID, i.category, i.tenant), i.quotas, reg.Models()), nil
	})
	secrets := fileSecrets(filepath.Join(d.Config.Daemon.StateDir, "gateway", "secrets"))
	ctx, cancel := context.WithTimeout(context.Background(), policyLoadTimeout)
	defer cancel()
	gw, err := gateway.New(ctx, d.Store, gateway.Deps{Identifier: id, Policy: rules, Secrets: secrets, Registry: reg.WithDisabled(unverified)},
		gateway.WithLogger(d.Logger.With("service", "gateway")), gateway.WithClock(d.Now),
		gateway.WithTransport(backendTransport(n)))
	if err != nil {
		return nil, nil, err
	}
	return gw, reg, nil
}

// rulesOf is the gateway's view of an effective policy: the registry's
// models it allows, cloud, the agent's monthly budgets (its policy's
// budget) and its tenant's (the tenant's quotas, for all its agents
// together).
func rulesOf(e *policy.Effective, q policy.Quotas, models []string) gateway.Rules {
	r := gateway.Rules{Models: []string{}, AllowCloud: e.AllowCloud.Value}
	for _, m := range models {
		if ok, _, _ := e.ModelAllowed(m, false); ok {
			r.Models = append(r.Models, m)
		}
	}
	if e.Tokens.Set {
		r.Agent.MonthlyTokens = e.Tokens.Value
	}
	if e.USDMicros.Set {
		r.Agent.MonthlyCostUSD = float64(e.USDMicros.Value) / 1e6
	}
	if q.TokensPerMonth != nil {
		r.Tenant.MonthlyTokens = *q.TokensPerMonth
	}
	if q.USDPerMonth != nil {
		r.Tenant.MonthlyCostUSD = *q.USDPerMonth
	}
	return r
}

// gatewayRegistry is the site's backends as the gateway's registry: each
// model is routed to the backends that list it, in their order.
func gatewayRegistry(gc config.Gateway) (*gateway.Registry, error) {
	var f gateway.RegistryFile
	routes := map[string][]gateway.TargetFile{}
	var order []string
	for _, b := range gc.Backends {
		u := b.URL
		if b.Agent != "" {
			u = "http://" + b.Agent + agentHostSuffix + ":" + strconv.Itoa(b.Port) + "/v1"
		}
		f.Backends = append(f.Backends, gateway.BackendFile{Name: b.Name, URL: u, Kind: b.Kind, Credential: b.Credential, Timeout: b.Timeout})
		for _, m := range b.Models {
			if routes[m] == nil {
				order = append(order, m)
			}
			routes[m] = append(routes[m], gateway.TargetFile{Backend: b.Name})
		}
	}
	for _, m := range order {
		f.Models = append(f.Models, gateway.ModelFile{Name: m, Route: routes[m]})
	}
	return gateway.NewRegistry(f, "omerta.yaml gateway.backends")
}

// backendTransport reaches backends from the network's namespace, an
// agent backend at its container's address; no proxy from the
// environment, no compression asked for (what a backend sends is what is
// passed on), as the gateway's own transport.
func backendTransport(n *agentNetwork) *http.Transport {
	agentBackends := map[string]bool{}
	for _, b := range n.cfg.Backends {
		if b.Agent != "" {
			agentBackends[b.Agent] = true
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if agent, ok := strings.CutSuffix(host, agentHostSuffix); ok && agentBackends[agent] {
			a, ok := n.agentAddr(agent)
			if !ok {
				return nil, fmt.Errorf("backend agent %s is not running on the agents' network", gwQuote(agent))
			}
			addr = net.JoinHostPort(a.String(), port)
		}
		var c net.Conn
		err = inNetns(n.ns, func() (err error) {
			c, err = dialer.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Transport{
		Proxy: nil, DialContext: dial, ForceAttemptHTTP2: true,
		MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second,
		DisableCompression: true, MaxResponseHeaderBytes: 64 << 10,
	}
}

// fileSecrets reads a backend's credential from dir/<name> (root-owned,
// in omertad's state directory): a regular file, not a symbolic link, of
// at most 8 KiB, its trailing newline dropped. Names with a path element
// are refused. No error holds the file's content.
func fileSecrets(dir string) gateway.Secrets {
	return gateway.SecretsFunc(func(_ context.Context, name string) ([]byte, error) {
		if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
			return nil, fmt.Errorf("credential %s: not a file name", gwQuote(name))
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("credential %s is not in %s", gwQuote(name), gwQuote(dir))
		}
		if err != nil {
			return nil, fmt.Errorf("opening credential %s (a symbolic link is refused): %w", gwQuote(name), err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("credential %s is not a regular file", gwQuote(name))
		}
		b, err := safeio.ReadAll(f, path, maxSecretBytes)
		if err != nil {
			return nil, fmt.Errorf("reading credential %s: %w", gwQuote(name), err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	})
}

// gwQuote quotes a foreign string for a message.
func gwQuote(s string) string { return `"` + terminal.Escape(s) + `"` }

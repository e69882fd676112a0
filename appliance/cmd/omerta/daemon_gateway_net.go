package main

// The agents' network as the runtime sees it (runtime.Network over
// netpolicy's Manager); daemon_gateway.go says how it is wired.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/gateway"
	"github.com/omertaos/omertaos/appliance/netpolicy"
	"github.com/omertaos/omertaos/appliance/policy"
)

// errNetworkStarting: the network has not finished starting.
var errNetworkStarting = errors.New("the agents' network is still starting")

// agentNetwork is runtime.Network over a netpolicy Manager, started by
// the gateway service. Its zero state is "starting"; start records the
// outcome once.
type agentNetwork struct {
	mgr    *netpolicy.Manager
	ns     netns.NsHandle
	log    *slog.Logger
	cfg    config.Gateway
	egress func(ctx context.Context, agent string) (netpolicy.Egress, error)
	gw     *gateway.Gateway // set by services; nil when it could not be built

	started chan struct{}
	err     error // why the network is down; set before started closes

	opMu     sync.Mutex        // serialises Attach, Release and the start's reconciliation
	attached map[string]bool   // containers attached by this process
	current  map[string]string // agent -> its container attached last
	mu       sync.RWMutex      // guards current for the gateway's dialer
}

var _ runtime.Network = (*agentNetwork)(nil)

// newAgentNetwork builds the agents' network the configuration asks for;
// nil when it is disabled. A configuration netpolicy refuses (resolvers it
// cannot use) is logged and leaves the network down, with the reason.
func newAgentNetwork(d daemon.Deps) *agentNetwork {
	gc := d.Config.Gateway
	if !gc.Enabled {
		return nil
	}
	log := d.Logger.With("service", "agents-network")
	n := &agentNetwork{ns: agentsNetNS, log: log, cfg: gc, started: make(chan struct{}),
		attached: map[string]bool{}, current: map[string]string{}}
	cfg, err := netpolicyConfig(gc)
	if err == nil {
		n.mgr, err = netpolicy.New(d.Store, cfg, netpolicy.WithLogger(log), netpolicy.WithClock(d.Now), netpolicy.WithNetns(n.ns))
	}
	if err != nil {
		n.fail(fmt.Errorf("configuring the agents' network: %w", err))
	}
	return n
}

// netpolicyConfig is the site's gateway section as netpolicy's Config.
func netpolicyConfig(gc config.Gateway) (netpolicy.Config, error) {
	cfg := netpolicy.DefaultConfig()
	cfg.Bridge, cfg.Subnet = gc.Bridge, gc.SubnetPrefix()
	cfg.GatewayPorts = []uint16{uint16(gc.Port)}
	cfg.DNSPort = config.GatewayDNSPort // what first boot's firewall admits
	cfg.Upstreams = gc.Upstreams
	if len(cfg.Upstreams) == 0 {
		up, err := netpolicy.UpstreamsFromResolvConf("/etc/resolv.conf", cfg.Subnet)
		if err != nil {
			return cfg, fmt.Errorf("gateway.upstreams is empty and %w", err)
		}
		cfg.Upstreams = up
	}
	return cfg, cfg.Validate()
}

func (n *agentNetwork) fail(err error) {
	n.err = err
	close(n.started)
}

// readyFunc is agents.WithNetwork's argument: nil without a network.
func (n *agentNetwork) readyFunc() func() error {
	if n == nil {
		return nil
	}
	return n.Ready
}

// runtimeOptions pass the network to the runtime (none without one).
func (n *agentNetwork) runtimeOptions() []runtime.Option {
	if n == nil {
		return nil
	}
	return []runtime.Option{runtime.WithNetwork(n)}
}

// start starts the Manager and records the outcome.
func (n *agentNetwork) start(ctx context.Context) error {
	select {
	case <-n.started:
		return n.err // failed while being configured
	default:
	}
	err := n.mgr.Start(ctx)
	if err != nil {
		err = fmt.Errorf("starting the agents' network: %w", err)
	}
	n.fail(err)
	return err
}

// Ready waits a little for the start and says whether the network is up.
func (n *agentNetwork) Ready() error {
	t := time.NewTimer(networkReadyWait)
	defer t.Stop()
	select {
	case <-n.started:
		return n.err
	case <-t.C:
		return errNetworkStarting
	}
}

// ResolvConf is the resolver's resolv.conf.
func (n *agentNetwork) ResolvConf() []byte {
	cfg := netpolicy.Config{Subnet: n.cfg.SubnetPrefix()}
	return cfg.ResolvConf()
}

// Attach joins a container to the network and puts its agent's egress
// policy in force before the container's first instruction.
func (n *agentNetwork) Attach(ctx context.Context, ctr, netnsPath string) error {
	if err := n.Ready(); err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if _, err := n.mgr.Attach(ctx, ctr, netnsPath); err != nil {
		return err
	}
	n.attached[ctr] = true
	agent, _, ok := agents.AgentOfContainer(ctr)
	if !ok {
		return nil // not the agents service's: nothing but the gateway
	}
	if n.egress != nil {
		e, err := n.egress(ctx, agent)
		if err != nil {
			return fmt.Errorf("reading the egress policy of %s: %w", gwQuote(agent), err)
		}
		if err := n.mgr.SetPolicy(ctx, ctr, e, agents.SystemActor); err != nil {
			return err
		}
	}
	n.mu.Lock()
	n.current[agent] = ctr
	n.mu.Unlock()
	return nil
}

// Release forgets a deleted container: its link, rules and address. While
// the network is down there is nothing in force to remove, and the next
// start's reconciliation forgets the address (the container is not among
// the live ones).
func (n *agentNetwork) Release(ctx context.Context, ctr string) error {
	if n.Ready() != nil {
		return nil
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	delete(n.attached, ctr)
	n.mu.Lock()
	if agent, _, ok := agents.AgentOfContainer(ctr); ok && n.current[agent] == ctr {
		delete(n.current, agent)
	}
	n.mu.Unlock()
	err := n.mgr.Release(ctx, ctr, agents.SystemActor)
	if errors.Is(err, netpolicy.ErrNotFound) {
		return nil
	}
	return err
}

// reconcile makes the network forget containers that no longer exist:
// live (listed by the runtime) and those attached meanwhile are kept.
func (n *agentNetwork) reconcile(ctx context.Context, live []string) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	keep := append([]string(nil), live...)
	for c := range n.attached {
		keep = append(keep, c)
	}
	rep, err := n.mgr.Reconcile(ctx, keep)
	if err == nil && len(rep.Released)+len(rep.RemovedLinks) > 0 {
		n.log.Info("agents' network reconciled", "released", len(rep.Released), "links_removed", len(rep.RemovedLinks))
	}
	return err
}

// resync sets again the egress of every attached container whose
// agent's policy now says otherwise, and returns how many changed.
func (n *agentNetwork) resync(ctx context.Context) (int, error) {
	if n.egress == nil {
		return 0, nil
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	changed := 0
	var errs []error
	for ctr := range n.attached {
		agent, _, ok := agents.AgentOfContainer(ctr)
		if !ok {
			continue
		}
		want, err := n.egress(ctx, agent)
		if err != nil {
			errs = append(errs, fmt.Errorf("the egress policy of %s: %w", gwQuote(agent), err))
			continue
		}
		have, err := n.mgr.Policy(ctx, ctr)
		if err == nil && sameEgress(want, have) {
			continue
		}
		if err := n.mgr.SetPolicy(ctx, ctr, want, agents.SystemActor); err != nil {
			errs = append(errs, err)
			continue
		}
		changed++
	}
	return changed, errors.Join(errs...)
}

// sameEgress compares two policies as sets.
func sameEgress(a, b netpolicy.Egress) bool {
	eq := func(x, y []string) bool {
		x, y = slices.Clone(x), slices.Clone(y)
		slices.Sort(x)
		slices.Sort(y)
		return slices.Equal(slices.Compact(x), slices.Compact(y))
	}
	return eq(a.Names, b.Names) && eq(a.CIDRs, b.CIDRs)
}

// agentAddr is the address of the agent's container attached last.
func (n *agentNetwork) agentAddr(agent string) (netip.Addr, bool) {
	n.mu.RLock()
	ctr, ok := n.current[agent]
	n.mu.RUnlock()
	if !ok {
		return netip.Addr{}, false
	}
	return n.mgr.AgentAddr(ctr)
}

// inNetns runs fn on a thread in ns (none: here). Sockets keep the
// namespace they were made in. fn runs on a goroutine of its own, locked
// to its thread: a thread that cannot return to omertad's namespace is
// never reused (it ends with the goroutine).
func inNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err // still in orig: the thread may be unlocked
			goruntime.UnlockOSThread()
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			goruntime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// egressOf is the agent's effective egress as netpolicy takes it: the
// names and the IPv4 networks every layer of its policy allows.
func egressOf(e *policy.Effective) netpolicy.Egress {
	var out netpolicy.Egress
	seen := map[string]bool{}
	for _, layer := range e.Egress {
		cands := append([]string(nil), layer.Items.Names...)
		for _, s := range layer.Items.Suffixes {
			cands = append(cands, "*"+s)
		}
		for _, c := range cands {
			probe := c
			if strings.HasPrefix(c, "*.") {
				probe = "omerta-wildcard-probe" + c[1:] // allowed by a layer only if it allows the whole domain
			}
			if !seen[c] && e.EgressAllowsName(probe) {
				seen[c] = true
				out.Names = append(out.Names, c)
			}
		}
	}
	for _, p := range e.EgressPrefixes() {
		if p.Addr().Is4() && len(out.CIDRs) < netpolicy.MaxEgressCIDRs {
			out.CIDRs = append(out.CIDRs, p.String())
		}
	}
	if len(out.Names) > netpolicy.MaxEgressNames {
		out.Names = out.Names[:netpolicy.MaxEgressNames]
	}
	return out
}

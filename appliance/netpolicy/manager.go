package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/time/rate"
)

// Manager is the agents' network: the bridge, each agent's link and
// address, the nftables rules, and the agents' resolver. Its methods are
// safe for concurrent use.
type Manager struct {
	cfg      Config
	st       *store.Store
	log      *slog.Logger
	now      func() time.Time
	hostNS   netns.NsHandle // not open: this process's namespace
	upstream Upstream

	opMu    sync.Mutex // serialises Start, Close, Attach, SetPolicy, Release, Reconcile
	running atomic.Bool
	links   *links
	res     *resolver

	mu     sync.RWMutex // guards agents and byAddr
	agents map[string]*agentState
	byAddr map[netip.Addr]*agentState

	nftMu sync.Mutex // guards nft and every agentState's mark, rules swap and resolved
	nft   *kernel

	stats   counters
	denials denialLog
}

// agentState is one agent as the resolver and the kernel see it.
type agentState struct {
	id    string
	addr  netip.Addr
	veth  string
	rules atomic.Pointer[egressRules]

	mark     uint32                        // guarded by Manager.nftMu
	resolved map[netip.Addr]*resolvedEntry // guarded by Manager.nftMu

	limiter  *rate.Limiter
	inflight atomic.Int32
}

// resolvedEntry is an address in the agent's dns set.
type resolvedEntry struct {
	expires time.Time
	names   []string // the allowed names it was resolved for (bounded)
}

// maxNamesPerAddr bounds the names remembered for one resolved address.
const maxNamesPerAddr = 8

// Option changes how New builds a Manager.
type Option func(*Manager)

// WithNetns runs the agents' network in ns instead of this process's
// network namespace (tests give one they made). The Manager does not
// close ns.
func WithNetns(ns netns.NsHandle) Option { return func(m *Manager) { m.hostNS = ns } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithClock sets the clock used for TTLs and the audit log's callers.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithUpstream replaces the resolvers of Config.Upstreams.
func WithUpstream(u Upstream) Option { return func(m *Manager) { m.upstream = u } }

// New checks cfg and builds a Manager on st (opened with Schema). Nothing
// is touched until Start.
func New(st *store.Store, cfg Config, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("building the agents' network: %w: no store", ErrInvalid)
	}
	m := &Manager{cfg: cfg, st: st, log: slog.Default(), now: time.Now, hostNS: netns.None(),
		agents: map[string]*agentState{}, byAddr: map[netip.Addr]*agentState{}}
	m.denials.init(denialLogSize)
	for _, o := range opts {
		o(m)
	}
	if m.upstream == nil {
		m.upstream = newClientUpstream(cfg.Upstreams, cfg.UpstreamTimeout)
	}
	return m, nil
}

// Name makes the Manager a daemon.Service.
func (m *Manager) Name() string { return "netpolicy" }

// Run starts the network, waits for ctx to end, and closes (leaving the
// kernel state in place for the next start).
func (m *Manager) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// Gateway is the bridge's address: the agents' route, resolver and model
// gateway.
func (m *Manager) Gateway() netip.Addr { return m.cfg.Gateway() }

// ResolverAddr is where the agents' resolver listens.
func (m *Manager) ResolverAddr() netip.AddrPort {
	return netip.AddrPortFrom(m.cfg.Gateway(), m.cfg.DNSPort)
}

// AgentByAddr names the agent an address on the agents' network belongs
// to: how the resolver and the model gateway know who is calling. The
// bridge's rules drop anything an agent sends from another address.
func (m *Manager) AgentByAddr(a netip.Addr) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s, ok := m.byAddr[a.Unmap()]; ok {
		return s.id, true
	}
	return "", false
}

// Start opens the kernel handles, records or re-addresses the subnet,
// makes the bridge, rebuilds the nftables tables from the stored agents
// (keeping the addresses already resolved for them), and starts the
// resolver. Links of running agents are kept; call Attach for each (it does
// nothing when a link is right) and Reconcile with the agents that exist.
func (m *Manager) Start(ctx context.Context) (err error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running.Load() {
		return nil
	}
	defer func() {
		if err != nil {
			m.closeHandles()
		}
	}()
	if err := m.openHandles(); err != nil {
		return err
	}
	rows, err := m.openNetwork(ctx)
	if err != nil {
		return err
	}
	if _, err := m.links.ensureBridge(); err != nil {
		return err
	}
	if err := m.loadKernelState(rows); err != nil {
		return err
	}
	m.res = newResolver(m)
	if err := m.res.start(m.hostNS, m.ResolverAddr()); err != nil {
		return err
	}
	m.running.Store(true)
	m.log.Info("agents' network started", "bridge", m.cfg.Bridge, "subnet", m.cfg.Subnet.String(),
		"gateway", m.cfg.Gateway().String(), "agents", len(rows))
	return nil
}

func (m *Manager) openHandles() error {
	var h *netlink.Handle
	var err error
	if m.hostNS.IsOpen() {
		h, err = netlink.NewHandleAt(m.hostNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	m.links = &links{h: h, cfg: &m.cfg}
	dial := func() (*nftables.Conn, error) {
		opts := []nftables.ConnOption{nftables.AsLasting()}
		if m.hostNS.IsOpen() {
			opts = append(opts, nftables.WithNetNSFd(int(m.hostNS)))
		}
		return nftables.New(opts...)
	}
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	m.nft, err = newKernel(&m.cfg, dial)
	return err
}

func (m *Manager) closeHandles() {
	m.nftMu.Lock()
	if m.nft != nil {
		m.nft.close()
		m.nft = nil
	}
	m.nftMu.Unlock()
	if m.links != nil {
		m.links.h.Close()
		m.links = nil
	}
}

// loadKernelState builds the agents in memory from their rows and what
// the kernel's dns sets still hold, and replaces the tables.
func (m *Manager) loadKernelState(rows []agentRow) error {
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	kept, err := m.nft.readResolved()
	if err != nil {
		return err
	}
	now := m.now()
	agents := map[string]*agentState{}
	byAddr := map[netip.Addr]*agentState{}
	for _, r := range rows {
		rules, err := compileEgress(r.Egress)
		if err != nil {
			// A stored policy this build refuses: nothing but the gateway
			// and the resolver until a valid one is set.
			m.log.Error("stored egress policy refused; the agent gets none", "agent", r.ID, "error", err)
			rules, _ = compileEgress(Egress{})
		}
		s := m.newAgentState(r, rules)
		for _, e := range kept[r.ID] {
			if len(s.resolved) < m.cfg.Limits.ResolvedPerAgent && anyAllowed(rules, e.names) {
				s.resolved[e.addr] = &resolvedEntry{expires: now.Add(e.timeout), names: e.names}
			}
		}
		agents[r.ID], byAddr[r.Addr] = s, s
	}
	m.mu.Lock()
	m.agents, m.byAddr = agents, byAddr
	m.mu.Unlock()
	return m.rebuildLocked()
}

func (m *Manager) newAgentState(r agentRow, rules *egressRules) *agentState {
	s := &agentState{id: r.ID, addr: r.Addr, veth: r.Veth, mark: r.Mark, resolved: map[netip.Addr]*resolvedEntry{},
		limiter: rate.NewLimiter(rate.Limit(m.cfg.Limits.QueryRate), m.cfg.Limits.QueryBurst)}
	s.rules.Store(rules)
	return s
}

func anyAllowed(rules *egressRules, names []string) bool {
	for _, n := range names {
		if rules.allows(n) {
			return true
		}
	}
	return false
}

// rebuildLocked replaces the tables by the agents in memory. nftMu held.
func (m *Manager) rebuildLocked() error {
	m.mu.RLock()
	specs := make([]agentSpec, 0, len(m.agents))
	for _, s := range m.agents {
		specs = append(specs, m.specLocked(s))
	}
	m.mu.RUnlock()
	return m.nft.rebuild(specs)
}

// specLocked is s as the kernel must hold it, resolved addresses with
// their time left. nftMu held.
func (m *Manager) specLocked(s *agentState) agentSpec {
	now := m.now()
	sp := agentSpec{id: s.id, addr: s.addr, veth: s.veth, mark: s.mark, rules: s.rules.Load()}
	for a, e := range s.resolved {
		if left := e.expires.Sub(now); left > time.Second {
			sp.resolved = append(sp.resolved, resolvedElem{addr: a, timeout: left, names: e.names})
		} else {
			delete(s.resolved, a)
		}
	}
	return sp
}

// Close stops the resolver and closes the handles. The bridge, the links
// and the rules stay, so that the agents keep their network (and stay
// confined) while omertad restarts; Teardown removes them.
func (m *Manager) Close() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.closeLocked()
}

func (m *Manager) closeLocked() error {
	var err error
	if m.res != nil {
		err = m.res.stop()
		m.res = nil
	}
	m.running.Store(false)
	m.closeHandles()
	return err
}

// Teardown removes everything the agents' network put in the kernel: both
// tables, every agent's link, the bridge. The stored addresses and
// policies stay. It works whether or not the Manager was started.
func (m *Manager) Teardown(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.closeLocked(); err != nil {
		return err
	}
	if err := m.openHandles(); err != nil {
		return err
	}
	defer m.closeHandles()
	var errs []error
	m.nftMu.Lock()
	errs = append(errs, m.nft.remove())
	m.nftMu.Unlock()
	names, err := m.links.agentLinks()
	errs = append(errs, err)
	for _, n := range append(names, m.cfg.Bridge) {
		_, err := m.links.remove(n)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tearing the agents' network down: %w", err)
	}
	return m.st.Audit(ctx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.network.removed", Target: m.cfg.Bridge,
		Detail: map[string]any{"links": len(names)}})
}

func (m *Manager) agent(id string) (*agentState, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.agents[id]
	return s, ok
}

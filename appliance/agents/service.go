package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

// Defaults for a Service; each has an Option.
const (
	DefaultStateDir          = "/var/lib/omerta/agents"
	DefaultInterval          = 2 * time.Second
	DefaultTelemetryInterval = 10 * time.Second
	DefaultStopGrace         = 10 * time.Second
	DefaultMaxTasks          = 64
	DefaultMaxTasksPerAgent  = 8
	// DefaultTaskHistory is how many finished tasks each agent keeps.
	DefaultTaskHistory = 200
	// SystemActor is the actor of what the Service does on its own (the
	// reconciler's restarts, rollbacks and orphan removal).
	SystemActor = "omertad"
)

// Service owns the agents: their desired state in SQLite, the lifecycle
// verbs, tasks, the reconciler (Run), the event bus and telemetry. It is a
// daemon.Service: Name and Run.
type Service struct {
	// cycle lets one of a reconcile pass and a telemetry sample run at a
	// time: containerd 1.6 answers both by asking every shim in turn, and
	// overlapping them doubled the pass (measured: 44 ms mean, 105 ms worst
	// with 50 agents, against 28 ms for a pass alone).
	cycle sync.Mutex

	st       *store.Store
	rt       Runtime
	now      func() time.Time
	log      *slog.Logger
	stateDir string
	profile  config.Profile
	interval time.Duration
	telInt   time.Duration
	grace    time.Duration
	maxTasks int
	perAgent int
	history  int

	bus   *Bus
	locks keyedMutex
	// ops is held shared by every verb that changes containers and
	// exclusively by the orphan sweep, so that the sweep never sees a
	// container between its creation and its row becoming visible.
	ops  sync.RWMutex
	kick chan struct{}

	specs specCache
	tasks taskRunner
	tel   telemetry
	met   *metrics

	// lastOrphans is what the last sweep could not remove (the
	// reconciler's goroutine only).
	lastOrphans string

	// down is set while containerd does not answer.
	downMu sync.Mutex
	down   bool

	// Policy (admission.go): each nil when not configured.
	admitter   Admitter
	limiter    TaskLimiter
	verifier   ImageVerifier
	compliance Compliance
	comp       complianceState

	// gpus is GPU admission (gpus.go); nil when not configured.
	gpus *gpuState
	// network says whether gateway mode can run (network.go); nil: it cannot.
	network func() error
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (tests drive backoff with it).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithStateDir sets the directory holding each agent's data directory
// (default /var/lib/omerta/agents).
func WithStateDir(dir string) Option { return func(s *Service) { s.stateDir = dir } }

// WithProfile sets the profile whose default isolation applies to a
// manifest that names none.
func WithProfile(p config.Profile) Option { return func(s *Service) { s.profile = p } }

// WithInterval sets the time between reconcile passes.
func WithInterval(d time.Duration) Option { return func(s *Service) { s.interval = d } }

// WithTelemetryInterval sets the time between telemetry samples.
func WithTelemetryInterval(d time.Duration) Option { return func(s *Service) { s.telInt = d } }

// WithStopGrace sets how long a stopping agent has between SIGTERM and
// SIGKILL.
func WithStopGrace(d time.Duration) Option { return func(s *Service) { s.grace = d } }

// WithTaskLimits bounds the tasks running at once, in all and per agent.
func WithTaskLimits(total, perAgent int) Option {
	return func(s *Service) { s.maxTasks, s.perAgent = total, perAgent }
}

// WithBusBuffer sets each event subscriber's buffer.
func WithBusBuffer(n int) Option { return func(s *Service) { s.bus = NewBus(n) } }

// New returns the Service on st (opened with Schema) and rt. It creates
// the state directory and marks the tasks that a previous omertad left
// PENDING or RUNNING as FAILED: their results were lost with it.
func New(st *store.Store, rt Runtime, opts ...Option) (*Service, error) {
	if st == nil || rt == nil {
		return nil, errors.New("agents: a store and a runtime are required")
	}
	s := &Service{
		st: st, rt: rt, now: time.Now, log: slog.Default(), stateDir: DefaultStateDir,
		profile: config.ProfileUser, interval: DefaultInterval, telInt: DefaultTelemetryInterval,
		grace: DefaultStopGrace, maxTasks: DefaultMaxTasks, perAgent: DefaultMaxTasksPerAgent,
		history: DefaultTaskHistory, kick: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	if s.bus == nil {
		s.bus = NewBus(DefaultBusBuffer)
	}
	if !filepath.IsAbs(s.stateDir) || filepath.Clean(s.stateDir) != s.stateDir {
		return nil, fmt.Errorf("agents: state directory %q is not a clean absolute path", s.stateDir)
	}
	if s.interval <= 0 || s.telInt <= 0 || s.grace < 0 || s.maxTasks < 1 || s.perAgent < 1 {
		return nil, errors.New("agents: intervals and task limits must be positive")
	}
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agents: creating the state directory: %w", err)
	}
	s.met = newMetrics(s)
	s.tasks.init()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.failInterruptedTasks(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Name names the Service among the daemon's services.
func (s *Service) Name() string { return "agents" }

// Bus is the Service's event bus.
func (s *Service) Bus() *Bus { return s.bus }

// Close cancels the tasks still running and waits for them. Run does the
// same when it returns.
func (s *Service) Close() { s.tasks.stop() }

// poke asks the reconciler for a pass soon.
func (s *Service) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) setDown(down bool) (changed bool) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	changed = s.down != down
	s.down = down
	return changed
}

// Available reports whether containerd answered the last reconcile pass
// (for the API's health: agents are "unknown" while it does not).
func (s *Service) Available() bool {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	return !s.down
}

// agentDir is the agent's own data directory.
func (s *Service) agentDir(id string) string { return filepath.Join(s.stateDir, id) }

// keyedMutex is one mutex per agent id, dropped when nobody holds or
// waits for it, so that ids seen once do not accumulate.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

// lock locks id and returns its unlock.
func (k *keyedMutex) lock(id string) func() {
	m := k.ref(id)
	m.Lock()
	return func() { m.Unlock(); k.unref(id, m) }
}

// tryLock locks id when it is free.
func (k *keyedMutex) tryLock(id string) (func(), bool) {
	m := k.ref(id)
	if !m.TryLock() {
		k.unref(id, m)
		return nil, false
	}
	return func() { m.Unlock(); k.unref(id, m) }, true
}

func (k *keyedMutex) ref(id string) *refMutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*refMutex{}
	}
	m := k.m[id]
	if m == nil {
		m = &refMutex{}
		k.m[id] = m
	}
	m.refs++
	return m
}

func (k *keyedMutex) unref(id string, m *refMutex) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if m.refs--; m.refs == 0 {
		delete(k.m, id)
	}
}

// specCache holds parsed manifests and compiled configuration schemas by
// agent and generation: a generation's spec never changes, and parsing
// (the schema's compilation above all) is the costly part of a read.
type specCache struct {
	mu sync.Mutex
	m  map[specKey]*specEntry
}

type specKey struct {
	agent string
	gen   int64
}

type specEntry struct {
	m  *manifest.Manifest
	cs *manifest.ConfigSchema // nil without spec.configSchema
}

func (c *specCache) get(k specKey) *specEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *specCache) put(k specKey, e *specEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[specKey]*specEntry{}
	}
	c.m[k] = e
}

// keep drops every entry that live does not name.
func (c *specCache) keep(live func(specKey) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !live(k) {
			delete(c.m, k)
		}
	}
}

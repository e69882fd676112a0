// Package runtime runs agents' containers on containerd: it imports image
// archives, creates locked-down containers in one of two isolation levels
// (runc, or gVisor through the runc shim), starts, stops and deletes them,
// runs commands in them, reads their cgroup metrics and finds what is left
// in the namespace that its caller does not know.
//
// GPUs come only through CDI: a Spec carries the agent's admitted grant
// (appliance/gpu), and the container gets exactly that grant's devices
// from the spec appliance/gpu writes, recorded on the container so that
// the grant can be restored after a restart. A sandboxed (gVisor) agent
// gets none: the wrapper does not enable runsc's nvproxy, which supports
// only the driver versions it was built for (Debian's runsc 0.0~20240729
// lists 535.104.12 to 550.90.07, not Debian's 550.163.01); SandboxGPUs
// says so for a given driver.
//
// It knows nothing of the database or of HTTP: callers match its sentinel
// errors (ErrNotFound, ErrExists, ...) with errors.Is, never containerd's.
package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// Defaults for a Runtime; every one has an Option.
const (
	DefaultNamespace   = "omerta"
	DefaultLogDir      = "/var/log/omerta/agents"
	DefaultRunDir      = "/run/omerta/runtime"
	DefaultRunsc       = "/usr/bin/runsc"
	DefaultSnapshotter = "overlayfs"
	// DefaultMaxArchive bounds an image archive's size.
	DefaultMaxArchive = 8 << 30
	// DefaultLogMax is the size past which a log is rotated.
	DefaultLogMax = 16 << 20
	// DefaultLogKeep is how many rotated logs are kept.
	DefaultLogKeep = 3
)

// Runtime is the adapter to one containerd namespace. Its methods are safe
// for concurrent use.
type Runtime struct {
	c           *client.Client
	ns          string
	logDir      string
	runDir      string
	runsc       string
	runtimeRoot string
	cdiRoot     rootfs.Root
	snapshotter string
	maxArchive  int64
	logMax      int64
	logKeep     int
	now         func() time.Time
	log         *slog.Logger
	// address is containerd's socket, as its shims are told it (-address):
	// what proves a shim belongs to this containerd.
	address string
	// The host's interfaces, parameters for tests: /proc, the shims'
	// socket directory, the mount table giving the cgroup hierarchies,
	// and runc.
	procDir   string
	socketDir string
	mountinfo string
	runcBin   string
	net       Network // the agents' network (network.go); nil: gateway mode refused

	mu       sync.Mutex
	inflight map[string]int  // container ids being created, started, stopped or deleted
	leases   map[string]bool // leases this Runtime holds now
	imports  int             // imports under way (their snapshots are unowned until done)
	warned   map[string]bool // what warnOnce has logged

	// startTimeout bounds a task's creation and start (DefaultStartTimeout).
	startTimeout time.Duration
	// leaseMade, for tests, runs as soon as containerd has made a lease.
	leaseMade func(id string)
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithNamespace sets the containerd namespace (default "omerta").
func WithNamespace(ns string) Option { return func(r *Runtime) { r.ns = ns } }

// WithLogDir sets the directory of the per-agent log files.
func WithLogDir(dir string) Option { return func(r *Runtime) { r.logDir = dir } }

// WithRunDir sets the directory the Runtime owns for its gVisor wrapper and
// the FIFOs of exec'd processes (default /run/omerta/runtime).
func WithRunDir(dir string) Option { return func(r *Runtime) { r.runDir = dir } }

// WithRunsc sets the path of gVisor's runsc (default /usr/bin/runsc).
func WithRunsc(path string) Option { return func(r *Runtime) { r.runsc = path } }

// WithRuntimeRoot sets the directory under which runc (root/runc) and runsc
// (root/runsc) keep their state. Without it runc uses the shim's default,
// /run/containerd/runc, and runsc /run/containerd/runsc; a test's private
// containerd must set it apart from the system's.
func WithRuntimeRoot(dir string) Option { return func(r *Runtime) { r.runtimeRoot = dir } }

// WithSnapshotter sets the snapshotter (default overlayfs).
func WithSnapshotter(name string) Option { return func(r *Runtime) { r.snapshotter = name } }

// WithMaxArchive bounds the size of an archive ImportArchive accepts.
func WithMaxArchive(n int64) Option { return func(r *Runtime) { r.maxArchive = n } }

// WithLogRotation sets the size past which a log is rotated and how many
// rotated logs are kept.
func WithLogRotation(maxBytes int64, keep int) Option {
	return func(r *Runtime) { r.logMax, r.logKeep = maxBytes, keep }
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(r *Runtime) { r.now = now } }

// WithLogger sets where the Runtime logs what it finds and removes on its
// own (lost tasks); the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// WithAddress sets containerd's socket as its shims know it (containerd's
// grpc.address). By default it is the address the client dialled; a shim
// is recognised as this containerd's when its -address is that path or
// the same file.
func WithAddress(addr string) Option { return func(r *Runtime) { r.address = addr } }

// New returns a Runtime on client c. It creates its log and run
// directories and writes the gVisor wrapper into the run directory.
func New(c *client.Client, opts ...Option) (*Runtime, error) {
	r := &Runtime{
		c:            c,
		ns:           DefaultNamespace,
		logDir:       DefaultLogDir,
		runDir:       DefaultRunDir,
		runsc:        DefaultRunsc,
		cdiRoot:      rootfs.Host(),
		snapshotter:  DefaultSnapshotter,
		maxArchive:   DefaultMaxArchive,
		logMax:       DefaultLogMax,
		logKeep:      DefaultLogKeep,
		now:          time.Now,
		startTimeout: DefaultStartTimeout,
		log:          slog.Default(),
		address:      dialedAddress(c),
		procDir:      "/proc",
		socketDir:    "/run/containerd/s",
		mountinfo:    "/proc/self/mountinfo",
		runcBin:      "runc",
		inflight:     map[string]int{},
		leases:       map[string]bool{},
		warned:       map[string]bool{},
	}
	for _, o := range opts {
		o(r)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	for _, d := range []string{r.logDir, r.runDir, r.fifoDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating the runtime's directory: %w", err)
		}
	}
	if err := r.writeWrapper(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runtime) check() error {
	if r.c == nil {
		return fmt.Errorf("%w: no containerd client", ErrInvalid)
	}
	if err := validateID(r.ns); err != nil {
		return fmt.Errorf("%w: namespace %q: %v", ErrInvalid, r.ns, err)
	}
	for _, p := range []struct{ name, path string }{
		{"log dir", r.logDir}, {"run dir", r.runDir}, {"runsc", r.runsc},
	} {
		if !filepath.IsAbs(p.path) {
			return fmt.Errorf("%w: %s %q is not an absolute path", ErrInvalid, p.name, p.path)
		}
	}
	if r.address != "" && !filepath.IsAbs(r.address) {
		return fmt.Errorf("%w: containerd address %q is not an absolute path", ErrInvalid, r.address)
	}
	if r.log == nil {
		return fmt.Errorf("%w: no logger", ErrInvalid)
	}
	if r.cdiRoot.Dir() == "" {
		return fmt.Errorf("%w: no CDI root", ErrInvalid)
	}
	if r.runtimeRoot != "" && !filepath.IsAbs(r.runtimeRoot) {
		return fmt.Errorf("%w: runtime root %q is not an absolute path", ErrInvalid, r.runtimeRoot)
	}
	if r.maxArchive <= 0 || r.logMax <= 0 || r.logKeep < 1 {
		return fmt.Errorf("%w: archive cap, log size and kept logs must be positive", ErrInvalid)
	}
	return nil
}

// dialedAddress is the unix socket path the client dialled ("unix://PATH"
// is its gRPC target); "" when it is not known.
func dialedAddress(c *client.Client) string {
	if c == nil {
		return ""
	}
	t, ok := c.Conn().(interface{ Target() string })
	if !ok {
		return ""
	}
	p, ok := strings.CutPrefix(t.Target(), "unix://")
	if !ok || !filepath.IsAbs(p) {
		return ""
	}
	return filepath.Clean(p)
}

// Namespace is the containerd namespace the Runtime works in.
func (r *Runtime) Namespace() string { return r.ns }

func (r *Runtime) fifoDir() string { return filepath.Join(r.runDir, "fifo") }

// ctx puts the Runtime's namespace on a request.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.ns)
}

// busy marks id as being worked on, so that Orphans leaves it alone; the
// returned function unmarks it.
func (r *Runtime) busy(id string) func() {
	r.mu.Lock()
	r.inflight[id]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.inflight[id]--; r.inflight[id] <= 0 {
			delete(r.inflight, id)
		}
		r.mu.Unlock()
	}
}

func (r *Runtime) isBusy(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight[id] > 0
}

// cleanupCtx is for undoing a failed step: the caller's context may be the
// reason it failed (cancelled, timed out), and the undo must still run.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

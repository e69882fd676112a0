package agents

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/gpu"
)

// FakeRuntime is an in-memory Runtime for tests of this package and of the
// API: containers with states, exits, metrics and logs, failures on demand,
// and a record of the calls made. Its errors wrap the runtime's sentinels,
// as *runtime.Runtime's do.
type FakeRuntime struct {
	mu      sync.Mutex
	logDir  string
	now     func() time.Time
	ctrs    map[string]*fakeContainer
	images  map[string]runtime.Image
	remote  map[string]runtime.Image // a registry's images, by ref
	snaps   map[string]bool          // active snapshots without a container
	leases  map[string]bool
	down    bool
	wedged  map[string]bool
	calls   []string
	nextPid uint32

	// CreateHook and StartHook, when set, may fail a create or start (a
	// failed start removes the container, as the real runtime does).
	CreateHook func(s runtime.Spec) error
	StartHook  func(id string) error
	// ExecHook, when set, runs an exec; the default copies stdin to
	// stdout, honouring the timeout, the output bound and ctx.
	ExecHook func(ctx context.Context, id string, es runtime.ExecSpec) (runtime.ExecResult, error)
}

type fakeContainer struct {
	spec      runtime.Spec
	state     runtime.State
	exitCode  uint32
	exitedAt  time.Time
	oomKilled bool
	metrics   runtime.Metrics
	pid       uint32
}

// NewFakeRuntime returns a FakeRuntime writing logs under logDir, on the
// clock now (nil: time.Now).
func NewFakeRuntime(logDir string, now func() time.Time) *FakeRuntime {
	if now == nil {
		now = time.Now
	}
	return &FakeRuntime{logDir: logDir, now: now, ctrs: map[string]*fakeContainer{}, images: map[string]runtime.Image{},
		remote: map[string]runtime.Image{},
		snaps:  map[string]bool{}, leases: map[string]bool{}, nextPid: 100}
}

var _ Runtime = (*FakeRuntime)(nil)

// AddImage makes an image available.
func (f *FakeRuntime) AddImage(img runtime.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.Name] = img
}

// AddRemoteImage puts an image in the fake registry, under img.Name.
func (f *FakeRuntime) AddRemoteImage(img runtime.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remote[img.Name] = img
}

// SetUnavailable makes every call fail as if containerd were down.
func (f *FakeRuntime) SetUnavailable(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// Calls returns the mutating calls made so far ("create x-g1", "start
// x-g1", "stop x-g1", "delete x-g1") and forgets them.
func (f *FakeRuntime) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

// Exit makes a running container's process exit, as a crash would.
func (f *FakeRuntime) Exit(id string, code uint32, oom bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok || c.state != runtime.Running {
		return fmt.Errorf("fake: %s is not running", id)
	}
	c.state, c.exitCode, c.exitedAt, c.oomKilled = runtime.Stopped, code, f.now(), oom
	if oom {
		c.metrics.OOMKills++
	}
	return nil
}

// Wedge makes every start of container id fail as containerd 1.6 does
// after its client died while deleting the task: "its task exists",
// although no task is listed.
func (f *FakeRuntime) Wedge(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wedged == nil {
		f.wedged = map[string]bool{}
	}
	f.wedged[id] = true
	if c, ok := f.ctrs[id]; ok && c.state != runtime.Running {
		c.pid = 0 // its task is no longer listed
	}
}

// SetMetrics sets a container's metrics.
func (f *FakeRuntime) SetMetrics(id string, m runtime.Metrics) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.ctrs[id]; ok {
		c.metrics = m
	}
}

// AddOrphan puts a running container, a snapshot and a lease in the
// namespace that no agent owns.
func (f *FakeRuntime) AddOrphan(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrs[id] = &fakeContainer{spec: runtime.Spec{ID: id}, state: runtime.Running}
	f.snaps["snap-"+id] = true
	f.leases["lease-"+id] = true
}

// Spec returns the spec a container was created with.
func (f *FakeRuntime) Spec(id string) (runtime.Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return runtime.Spec{}, false
	}
	return c.spec, true
}

// Containers lists the container ids.
func (f *FakeRuntime) Containers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.ctrs))
	for id := range f.ctrs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (f *FakeRuntime) enter(call string) error {
	if f.down {
		return fmt.Errorf("fake: %w", runtime.ErrUnavailable)
	}
	if call != "" {
		f.calls = append(f.calls, call)
	}
	return nil
}

func (f *FakeRuntime) Create(_ context.Context, s runtime.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("create " + s.ID); err != nil {
		return err
	}
	if _, ok := f.ctrs[s.ID]; ok || f.snaps[s.ID] {
		return fmt.Errorf("fake: creating %s: %w", s.ID, runtime.ErrExists)
	}
	if _, ok := f.images[s.Image]; !ok {
		return fmt.Errorf("fake: image %s: %w", s.Image, runtime.ErrNotFound)
	}
	if s.GPUs != nil && s.Isolation == runtime.Sandbox {
		return fmt.Errorf("fake: creating %s: %w: %s", s.ID, runtime.ErrUnsupported, fakeSandboxGPUs)
	}
	if f.CreateHook != nil {
		if err := f.CreateHook(s); err != nil {
			return err
		}
	}
	f.ctrs[s.ID] = &fakeContainer{spec: s, state: runtime.Created}
	return nil
}

func (f *FakeRuntime) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("start " + id); err != nil {
		return err
	}
	c, ok := f.ctrs[id]
	if !ok {
		return fmt.Errorf("fake: starting %s: %w", id, runtime.ErrNotFound)
	}
	if c.state == runtime.Running {
		return fmt.Errorf("fake: starting %s: %w: it is running", id, runtime.ErrState)
	}
	if f.wedged[id] {
		return fmt.Errorf("fake: starting %s: %w: its task exists", id, runtime.ErrState)
	}
	if f.StartHook != nil {
		if err := f.StartHook(id); err != nil {
			delete(f.ctrs, id)
			return fmt.Errorf("fake: starting %s: %w: %w", id, runtime.ErrStartFailed, err)
		}
	}
	f.nextPid++
	c.state, c.pid, c.exitCode, c.exitedAt, c.oomKilled = runtime.Running, f.nextPid, 0, time.Time{}, false
	c.metrics = runtime.Metrics{}
	return nil
}

func (f *FakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("stop " + id); err != nil {
		return err
	}
	c, ok := f.ctrs[id]
	if !ok {
		return fmt.Errorf("fake: stopping %s: %w", id, runtime.ErrNotFound)
	}
	if c.state == runtime.Running {
		c.state, c.exitCode, c.exitedAt = runtime.Stopped, 143, f.now()
	}
	return nil
}

func (f *FakeRuntime) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("delete " + id); err != nil {
		return err
	}
	if _, ok := f.ctrs[id]; !ok {
		return fmt.Errorf("fake: deleting %s: %w", id, runtime.ErrNotFound)
	}
	delete(f.ctrs, id)
	return nil
}

func (c *fakeContainer) status(id string) runtime.Status {
	return runtime.Status{ID: id, Image: c.spec.Image, Isolation: c.spec.Isolation, State: c.state, Pid: c.pid,
		ExitCode: c.exitCode, ExitedAt: c.exitedAt, OOMKilled: c.oomKilled, Labels: c.spec.Labels, GPUs: recordedGrant(c.spec.GPUs)}
}

// recordedGrant is what the real runtime reads back of a container's
// grant from its label: agent, mode, memory and the devices, no label
// or reservation.
func recordedGrant(g *gpu.Grant) *gpu.Grant {
	if g == nil {
		return nil
	}
	out := &gpu.Grant{Agent: g.Agent, Mode: g.Mode, MemoryBytes: g.MemoryBytes}
	for _, u := range g.Units {
		out.Units = append(out.Units, gpu.GrantedGPU{UUID: u.UUID, CDIName: u.CDIName})
	}
	return out
}

// fakeSandboxGPUs is the fake's reason, worded as the real runtime's.
const fakeSandboxGPUs = "sandbox isolation cannot have GPUs: gVisor nvproxy is not enabled on this appliance"

// SandboxGPUs refuses as the real runtime does; the driver is named.
func (f *FakeRuntime) SandboxGPUs(_ context.Context, driver string) error {
	if driver == "" {
		return fmt.Errorf("fake: %w: %s", runtime.ErrUnsupported, fakeSandboxGPUs)
	}
	return fmt.Errorf("fake: %w: %s (NVIDIA driver %s)", runtime.ErrUnsupported, fakeSandboxGPUs, driver)
}

func (f *FakeRuntime) Status(_ context.Context, id string) (runtime.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return runtime.Status{}, err
	}
	c, ok := f.ctrs[id]
	if !ok {
		return runtime.Status{}, fmt.Errorf("fake: %s: %w", id, runtime.ErrNotFound)
	}
	return c.status(id), nil
}

func (f *FakeRuntime) List(_ context.Context) ([]runtime.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return nil, err
	}
	out := make([]runtime.Status, 0, len(f.ctrs))
	for id, c := range f.ctrs {
		st := c.status(id)
		st.OOMKilled = false // as the real List: only Status reads it
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *FakeRuntime) Exec(ctx context.Context, id string, es runtime.ExecSpec) (runtime.ExecResult, error) {
	f.mu.Lock()
	err := f.enter("")
	c, ok := f.ctrs[id]
	hook := f.ExecHook
	f.mu.Unlock()
	if err != nil {
		return runtime.ExecResult{}, err
	}
	if !ok || c.state != runtime.Running {
		return runtime.ExecResult{}, fmt.Errorf("fake: exec in %s: %w", id, runtime.ErrNotFound)
	}
	if hook != nil {
		return hook(ctx, id, es)
	}
	return FakeEcho(ctx, es, 0)
}

// FakeEcho is the default exec: stdin copied to stdout after delay, with
// ExecSpec's timeout, output bound and cancellation honoured as the real
// runtime does.
func FakeEcho(ctx context.Context, es runtime.ExecSpec, delay time.Duration) (runtime.ExecResult, error) {
	var in []byte
	if es.Stdin != nil {
		in, _ = io.ReadAll(io.LimitReader(es.Stdin, 64<<20))
	}
	timeout := es.Timeout
	if timeout == 0 {
		timeout = runtime.DefaultExecTimeout
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-time.After(timeout):
		return runtime.ExecResult{ExitCode: 137}, fmt.Errorf("fake: %w after %v", runtime.ErrTimeout, timeout)
	case <-ctx.Done():
		return runtime.ExecResult{ExitCode: 137}, ctx.Err()
	}
	res := runtime.ExecResult{Stdout: in}
	if max := es.MaxOutput; max > 0 && int64(len(in)) > max {
		res.Stdout, res.Truncated = in[:max], true
	}
	return res, nil
}

func (f *FakeRuntime) Metrics(_ context.Context, id string) (runtime.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return runtime.Metrics{}, err
	}
	c, ok := f.ctrs[id]
	if !ok || c.state == runtime.Created {
		return runtime.Metrics{}, fmt.Errorf("fake: metrics of %s: %w", id, runtime.ErrNotFound)
	}
	return c.metrics, nil
}

func (f *FakeRuntime) MetricsAll(_ context.Context) (map[string]runtime.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return nil, err
	}
	out := map[string]runtime.Metrics{}
	for id, c := range f.ctrs {
		if c.state == runtime.Running || c.state == runtime.Stopped {
			out[id] = c.metrics
		}
	}
	return out, nil
}

func (f *FakeRuntime) Images(_ context.Context) ([]runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return nil, err
	}
	out := make([]runtime.Image, 0, len(f.images))
	for _, i := range f.images {
		out = append(out, i)
	}
	return out, nil
}

// Pull copies an image from the fake registry, refusing it, as the real
// runtime does, when it does not have the pinned digest.
func (f *FakeRuntime) Pull(_ context.Context, ref string, opts ...runtime.PullOption) (runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("pull " + ref); err != nil {
		return runtime.Image{}, err
	}
	img, ok := f.remote[ref]
	if !ok {
		return runtime.Image{}, fmt.Errorf("fake: pulling %s: %w", ref, runtime.ErrNotFound)
	}
	if d := runtime.PulledDigest(opts...); d != "" && d != img.Digest && d != img.Manifest && d != img.Config {
		return runtime.Image{}, fmt.Errorf("fake: pulling %s: %w: expected %s, it is %s", ref, runtime.ErrDigestMismatch, d, img.Digest)
	}
	f.images[ref] = img
	return img, nil
}

func (f *FakeRuntime) Logs(id string) (string, error) { return filepath.Join(f.logDir, id+".log"), nil }

// AppendLog appends to a container's log, as the shim would.
func (f *FakeRuntime) AppendLog(id, text string) error {
	if err := os.MkdirAll(f.logDir, 0o700); err != nil {
		return err
	}
	p, _ := f.Logs(id)
	fl, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer fl.Close()
	_, err = fl.WriteString(text)
	return err
}

func (f *FakeRuntime) Rotate(string) (bool, error) { return false, nil }

func (f *FakeRuntime) Orphans(_ context.Context, known func(string) bool) (runtime.Orphans, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(""); err != nil {
		return runtime.Orphans{}, err
	}
	var o runtime.Orphans
	for id, c := range f.ctrs {
		if !known(id) {
			o.Containers = append(o.Containers, id)
			if c.state == runtime.Running {
				o.Tasks = append(o.Tasks, id)
			}
		}
	}
	for k := range f.snaps {
		if !known(k) {
			o.Snapshots = append(o.Snapshots, k)
		}
	}
	for k := range f.leases {
		o.Leases = append(o.Leases, k)
	}
	sort.Strings(o.Containers)
	sort.Strings(o.Tasks)
	sort.Strings(o.Snapshots)
	sort.Strings(o.Leases)
	return o, nil
}

func (f *FakeRuntime) Cleanup(_ context.Context, o runtime.Orphans) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("cleanup"); err != nil {
		return err
	}
	for _, id := range o.Containers {
		delete(f.ctrs, id)
	}
	for _, k := range o.Snapshots {
		delete(f.snaps, k)
	}
	for _, k := range o.Leases {
		delete(f.leases, k)
	}
	return nil
}

// AddSnapshot leaves an active snapshot without a container, as a create
// that died half-way does.
func (f *FakeRuntime) AddSnapshot(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps[key] = true
}

// HasSnapshot reports whether a loose snapshot is there.
func (f *FakeRuntime) HasSnapshot(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snaps[key]
}

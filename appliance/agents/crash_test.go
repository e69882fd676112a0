package agents

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

// The crash test runs the Service in a child process (this test binary
// re-executed) against a private containerd, SIGKILLs it at a random
// moment of its deploys, patches, disables, enables and deletes, and then
// has a fresh Service reconcile: the database and containerd must agree,
// nothing may be left that no agent owns, and every change the child saw
// complete must still be there.
const (
	envCrashDir   = "OMERTA_AGENTS_CRASH_DIR"
	envCrashAddr  = "OMERTA_AGENTS_CRASH_ADDRESS"
	envCrashNS    = "OMERTA_AGENTS_CRASH_NAMESPACE"
	envCrashRoot  = "OMERTA_AGENTS_CRASH_RUNTIME_ROOT"
	envCrashImage = "OMERTA_AGENTS_CRASH_IMAGE"
	envCrashSeed  = "OMERTA_AGENTS_CRASH_SEED"
	// EnvCrashRuns sets how many times the crash test kills the child
	// (default 10; make test runs 50).
	EnvCrashRuns = "OMERTA_AGENTS_CRASH_RUNS"
)

var crashAgents = []string{"a0", "a1", "a2"}

// crashDeps is what the child and the parent build on the same state.
func crashDeps(t testing.TB, c *client.Client, dir, ns, root string, opts ...runtime.Option) (*runtime.Runtime, *store.Store) {
	t.Helper()
	rt, err := runtime.New(c, append([]runtime.Option{runtime.WithNamespace(ns), runtime.WithLogDir(filepath.Join(dir, "logs")),
		runtime.WithRunDir(filepath.Join(dir, "run")), runtime.WithRuntimeRoot(root)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	return rt, st
}

func crashService(t testing.TB, st *store.Store, rt Runtime, dir string, log io.Writer) *Service {
	t.Helper()
	s, err := New(st, rt, WithStateDir(filepath.Join(dir, "agents")), WithStopGrace(100*time.Millisecond),
		WithInterval(50*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHelperAgentsCrashChild is the child: it changes agents at random
// until it is killed, printing "begin OP ID VALUE" before each change and
// "ok OP ID VALUE" once it returned without error.
func TestHelperAgentsCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("helper of TestCrashConsistency; runs only as its child process")
	}
	c, err := client.New(os.Getenv(envCrashAddr), client.WithTimeout(5*time.Second))
	if err != nil {
		fmt.Println("child: connecting:", err)
		os.Exit(3)
	}
	rt, st := crashDeps(t, c, dir, os.Getenv(envCrashNS), os.Getenv(envCrashRoot))
	s := crashService(t, st, rt, dir, os.Stderr)
	ctx := context.Background()
	go s.Run(ctx)
	seed, _ := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	r := rand.New(rand.NewPCG(seed, 42))
	exists := map[string]bool{}
	as, err := s.List(ctx)
	if err != nil {
		fmt.Println("child: listing:", err)
		os.Exit(3)
	}
	for _, a := range as {
		exists[a.ID] = a.Desired != DesiredDeleted
	}
	for i := 0; ; i++ {
		id := crashAgents[r.IntN(len(crashAgents))]
		op, val := "deploy", fmt.Sprintf("v%d-%d", seed, i)
		if exists[id] {
			op = []string{"patch", "patch", "disable", "enable", "delete", "purge"}[r.IntN(6)]
		}
		fmt.Printf("begin %s %s %s\n", op, id, val)
		err := crashOp(ctx, s, os.Getenv(envCrashImage), op, id, val)
		switch {
		case err == nil:
			fmt.Printf("ok %s %s %s\n", op, id, val)
			exists[id] = op != "delete" && op != "purge"
		case errors.Is(err, ErrExists):
			exists[id] = true
			fmt.Printf("err %s %s %v\n", op, id, err)
		case errors.Is(err, ErrNotFound):
			exists[id] = false
			fmt.Printf("err %s %s %v\n", op, id, err)
		default:
			fmt.Printf("err %s %s %v\n", op, id, err)
		}
	}
}

func crashOp(ctx context.Context, s *Service, image, op, id, val string) error {
	var err error
	switch op {
	case "deploy":
		m := busyboxManifest(&testing.T{}, image, runtime.Container, "exec sleep 3600")
		_, err = s.Deploy(ctx, DeployRequest{Manifest: m, ID: id, Config: map[string]any{"greeting": val},
			Secrets: map[string]any{"token": "secret-" + val}, Actor: testActor})
	case "patch":
		_, err = s.Patch(ctx, id, PatchRequest{Config: map[string]any{"greeting": val}, Actor: testActor})
	case "disable":
		_, err = s.Disable(ctx, id, testActor)
	case "enable":
		_, err = s.Enable(ctx, id, testActor)
	case "delete", "purge":
		err = s.Delete(ctx, id, op == "purge", testActor)
	}
	return err
}

// expect is what an agent should look like: absent, or present with a
// desired state and a greeting.
type expect struct {
	present  bool
	desired  Desired
	greeting string
}

func (x expect) String() string {
	if !x.present {
		return "absent"
	}
	return fmt.Sprintf("%s %s", x.desired, x.greeting)
}

func (x expect) after(op, val string) expect {
	switch op {
	case "deploy":
		return expect{true, DesiredEnabled, val}
	case "patch":
		x.greeting = val
	case "disable":
		x.desired = DesiredDisabled
	case "enable":
		x.desired = DesiredEnabled
	case "delete", "purge":
		return expect{}
	}
	return x
}

func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child omertad many times against containerd")
	}
	runs := 10
	if v := os.Getenv(EnvCrashRuns); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q is not a positive number", EnvCrashRuns, v)
		}
		runs = n
	}
	suite := newRealSuite(t)
	dir := t.TempDir()
	ns := suite.d.Namespace(t)
	var lost atomic.Int64
	logger := slog.New(lostCounter{slog.NewTextHandler(testWriter{t}, nil), &lost})
	rt, st := crashDeps(t, suite.d.Client(t), dir, ns, suite.d.RuntimeRoot, runtime.WithLogger(logger))
	st.Close()
	imgs, err := rt.ImportArchive(context.Background(), suite.archive.Path)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]expect{}
	for i := range runs {
		out := crashChild(t, suite, dir, ns, imgs[0].Name, i)
		want, inFlight := replay(model, out)
		got := reconcileAfterCrash(t, rt, dir)
		for _, id := range crashAgents {
			w, g := want[id], got[id]
			if g != w && !(inFlight.id == id && g == model[id]) {
				t.Errorf("run %d: agent %s is %s, want %s (in flight: %+v)\nchild:\n%s", i, id, g, w, inFlight, out)
			}
		}
		model = got
		checkNoLostShims(t, i, ns, rt)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d runs; %d tasks lost by containerd, found and removed by the runtime", runs, lost.Load())
}

// checkNoLostShims fails the test for each shim of the namespace whose
// task containerd does not list, once the database and containerd agree.
//
// containerd 1.6 leaves such a shim behind when its client dies in the
// middle of creating or deleting a task: the task is not listed, its name
// can no longer take a task, and when runc had created the container its
// process and cgroup stay. runtime.Orphans reports them (Orphans.Lost) and
// Cleanup removes them, so none may be left here.
func checkNoLostShims(t *testing.T, run int, ns string, rt *runtime.Runtime) {
	t.Helper()
	list, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range list {
		listed[c.ID] = c.Pid > 0 || c.State == runtime.Running
	}
	for _, p := range ctrtest.Processes(ns) {
		id := argAfter(p.Cmdline, "-id")
		if id == "" || listed[id] || argAfter(p.Cmdline, "-namespace") != ns {
			continue
		}
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID, p.PID))
		t.Errorf("run %d: containerd lost the task of %s and it was left: shim %d with children %q", run, id, p.PID, bytes.TrimSpace(kids))
	}
}

// lostCounter counts the lost tasks the runtime removed (its log records
// with event=runtime.LostTaskEvent) and passes every record on.
type lostCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h lostCounter) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" && a.Value.String() == runtime.LostTaskEvent {
			h.n.Add(1)
		}
		return true
	})
	return h.Handler.Handle(ctx, r)
}

func (h lostCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return lostCounter{h.Handler.WithAttrs(as), h.n}
}

func (h lostCounter) WithGroup(name string) slog.Handler {
	return lostCounter{h.Handler.WithGroup(name), h.n}
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// step is one change the child began.
type step struct{ op, id, val string }

// replay applies the changes the child completed to model; the one it
// began and did not finish is returned apart.
func replay(model map[string]expect, out string) (map[string]expect, step) {
	want := map[string]expect{}
	for k, v := range model {
		want[k] = v
	}
	var open step
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		switch f[0] {
		case "begin":
			open = step{f[1], f[2], f[3]}
		case "ok":
			want[f[2]] = want[f[2]].after(f[1], f[3])
			open = step{}
		case "err":
			open = step{}
		}
	}
	if open.id != "" {
		// Either outcome is allowed for the change in flight: the
		// caller compares with the state before it too.
		model[open.id] = want[open.id]
		want[open.id] = want[open.id].after(open.op, open.val)
	}
	return want, open
}

// crashChild runs the child and kills it after a random delay.
func crashChild(t *testing.T, suite *realSuite, dir, ns, image string, i int) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgentsCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashAddr+"="+suite.d.Address, envCrashNS+"="+ns,
		envCrashRoot+"="+suite.d.RuntimeRoot, envCrashImage+"="+image, envCrashSeed+"="+strconv.Itoa(i))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(i), 7))
	time.Sleep(time.Duration(100+r.IntN(1900)) * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("run %d: the child ended by itself (%v)\nstdout:\n%s\nstderr:\n%s", i, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// reconcileAfterCrash opens the state as a restarted omertad would,
// reconciles until the database and containerd agree, checks that they do,
// and returns what each agent is.
func reconcileAfterCrash(t *testing.T, rt *runtime.Runtime, dir string) map[string]expect {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var log bytes.Buffer
	s := crashService(t, st, rt, dir, &log)
	defer s.Close()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Reconcile(ctx)
		problem := errors.Join(err, agreement(ctx, s, rt))
		if problem == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database and containerd do not agree 30 s after the crash: %v\nlog:\n%s\n%s", problem, log.String(), crashDiagnostics())
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := map[string]expect{}
	as, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		g := fmt.Sprint(a.Config["greeting"])
		got[a.ID] = expect{true, a.Desired, g}
		if a.Desired != DesiredEnabled {
			continue
		}
		// The container runs the configuration the database holds.
		res, err := rt.Exec(ctx, a.Status.Container, runtime.ExecSpec{Args: []string{"/bin/cat", ConfigMountPath + "/" + ConfigFile}})
		if err != nil || !bytes.Contains(res.Stdout, []byte(`"greeting":"`+g+`"`)) {
			t.Errorf("agent %s runs %s with the configuration %s (%v), want greeting %s", a.ID, a.Status.Container, res.Stdout, err, g)
		}
	}
	return got
}

// agreement is nil when every agent's containers are what its row says and
// the namespace holds nothing else.
func agreement(ctx context.Context, s *Service, rt *runtime.Runtime) error {
	rows, err := loadAgents(ctx, s.st.Read(), "")
	if err != nil {
		return err
	}
	list, err := rt.List(ctx)
	if err != nil {
		return err
	}
	have := map[string]runtime.Status{}
	for _, c := range list {
		have[c.ID] = c
	}
	var errs []error
	for _, r := range rows {
		cid := containerID(r.ID, r.Gen)
		c, ok := have[cid]
		delete(have, cid)
		switch {
		case r.Desired == DesiredDeleted || r.PrevGen != 0:
			errs = append(errs, fmt.Errorf("%s: desired %s, prev generation %d", r.ID, r.Desired, r.PrevGen))
		case r.Desired == DesiredEnabled && (!ok || c.State != runtime.Running || r.St.State != StateRunning):
			errs = append(errs, fmt.Errorf("%s: enabled, container %s %v %s, status %s", r.ID, cid, ok, c.State, r.St.State))
		case r.Desired == DesiredDisabled && ok && c.State == runtime.Running:
			errs = append(errs, fmt.Errorf("%s: disabled but %s runs", r.ID, cid))
		}
	}
	for id := range have {
		errs = append(errs, fmt.Errorf("container %s belongs to no agent", id))
	}
	known, err := s.knownContainers(ctx)
	if err != nil {
		return err
	}
	o, err := rt.Orphans(ctx, func(id string) bool { return known[id] })
	if err != nil {
		return err
	}
	if !o.Empty() {
		errs = append(errs, fmt.Errorf("orphans: %+v", o))
	}
	return errors.Join(errs...)
}

// crashDiagnostics lists the containerd processes and runtime state left,
// for a failure message.
func crashDiagnostics() string {
	var b strings.Builder
	for _, p := range ctrtest.Processes("/tmp/ctrd-") {
		fmt.Fprintf(&b, "process %s\n", p)
	}
	return b.String()
}

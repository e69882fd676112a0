package agents_test

// Speed and footprint of the agents service against the ctr CLI on the
// same private containerd (ctrtest), with the sample tool agent's own image
// (out/agents/tool.oci.tar, built by `make agents`):
//
//	go test -run '^$' -bench 'DeployVsCtrRun|TaskVsCtrExec' -benchtime 10x ./appliance/agents/
//	OMERTA_BENCH_FOOTPRINT=1 go test -run '^$' -bench Footprint -benchtime 1x -timeout 20m ./appliance/agents/
//
// The comparisons alternate who goes first in each iteration and report
// both means and their ratio (service/ctr: below 1 the service is faster).
// The footprint runs the real omertad with 50 agents; it is long (about two
// minutes) and runs only when OMERTA_BENCH_FOOTPRINT=1.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/store"
)

const (
	fpActor = "uid:0"
	// fpTaskInput and fpTaskOutput are one of the tool agent's golden
	// tasks (image/agents/tool/testdata/tasks/extract-kinds).
	fpTaskInput  = `{"op": "extract", "text": "Call 555 0100 on 2024-01-02 or write to a@b.io", "kinds": ["dates", "emails"]}`
	fpTaskOutput = `{"op":"extract","emails":["a@b.io"],"dates":[{"text":"2024-01-02","iso":"2024-01-02"}]}`
	// fpMemory is the shipped entry's memory limit, given to ctr too.
	fpMemory = 128 << 20
	// fpGone bounds the wait for a removed container's processes.
	fpGone = 15 * time.Second
)

// fpManifest is the shipped catalog entry image/catalog/sample-tool.yaml
// with its isolation set. Its spec.command is dropped: the image's own
// entrypoint and command (/agent serve) are what `ctr run` starts, and the
// entry's ["/agent", "idle"] is no verb of the agent.
func fpManifest(tb testing.TB, iso runtime.Isolation) *manifest.Manifest {
	tb.Helper()
	data, err := safeio.ReadFile(filepath.Join(fpModuleRoot(tb), "image", "catalog", "sample-tool.yaml"), 1<<20)
	if err != nil {
		tb.Fatalf("reading the shipped tool entry: %v", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		tb.Fatalf("parsing the shipped tool entry: %v", err)
	}
	m.Spec.Command, m.Spec.Args, m.Spec.Isolation = nil, nil, manifest.Isolation(iso)
	if m.Spec.Resources.MemoryBytes() != fpMemory || m.Spec.Tasks == nil {
		tb.Fatalf("the shipped tool entry changed (memory %d, tasks %v): update the ctr flags here", m.Spec.Resources.MemoryBytes(), m.Spec.Tasks)
	}
	return m
}

// fpModuleRoot is the directory of go.mod above the test's directory.
func fpModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// fpArchive is the tool agent's OCI archive and what its index says of it.
type fpArchive struct {
	Path, Ref, Digest string
	Size              int64
}

// fpToolArchive is out/agents/tool.oci.tar; when `make agents` has not
// run, the archive is built into a temporary directory by the same
// builder.
func fpToolArchive(tb testing.TB) fpArchive {
	tb.Helper()
	root := fpModuleRoot(tb)
	out := filepath.Join(root, "out", "agents")
	if _, err := os.Stat(filepath.Join(out, "index.json")); err != nil {
		out = tb.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "run", "./scripts/agentimage", "-out", out)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("building the sample agents' archives (make agents): %v\n%s", err, b)
		}
	}
	data, err := safeio.ReadFile(filepath.Join(out, "index.json"), 1<<20)
	if err != nil {
		tb.Fatalf("reading the agents' index: %v", err)
	}
	var idx map[string]struct {
		Ref     string `json:"ref"`
		Digest  string `json:"digest"`
		Size    int64  `json:"size"`
		Archive string `json:"archive"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		tb.Fatalf("decoding %s: %v", filepath.Join(out, "index.json"), err)
	}
	e, ok := idx["tool"]
	if !ok || e.Archive != filepath.Base(e.Archive) || e.Archive == "" {
		tb.Fatalf("the agents' index has no usable tool entry: %+v", e)
	}
	return fpArchive{Path: filepath.Join(out, e.Archive), Ref: e.Ref, Digest: e.Digest, Size: e.Size}
}

// fpEnv is a Service and a Runtime in a namespace of their own on a
// private containerd, with the tool image imported.
type fpEnv struct {
	d   *ctrtest.Daemon
	ns  string
	dir string
	rt  *runtime.Runtime
	s   *agents.Service
	img runtime.Image
	ctr string
}

func newFpEnv(tb testing.TB, d *ctrtest.Daemon, a fpArchive) *fpEnv {
	tb.Helper()
	// The directory before the namespace: cleanups run last-in first-out
	// and the namespace's purge may need the gVisor wrapper in it.
	dir := tb.TempDir()
	ns := d.Namespace(tb)
	rt, err := runtime.New(d.Client(tb), runtime.WithNamespace(ns), runtime.WithLogDir(filepath.Join(dir, "logs")),
		runtime.WithRunDir(filepath.Join(dir, "run")), runtime.WithRuntimeRoot(d.RuntimeRoot))
	if err != nil {
		tb.Fatal(err)
	}
	imgs, err := rt.ImportArchive(context.Background(), a.Path, runtime.ExpectDigest(a.Digest))
	if err != nil || len(imgs) != 1 || imgs[0].Name != a.Ref {
		tb.Fatalf("importing %s: %+v, %v", a.Path, imgs, err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(agents.Schema))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	s, err := agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(2*time.Second),
		agents.WithLogger(slog.New(slog.NewTextHandler(fpLog{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return &fpEnv{d: d, ns: ns, dir: dir, rt: rt, s: s, img: imgs[0], ctr: ctrtest.Require(tb, "ctr")}
}

type fpLog struct{ tb testing.TB }

func (w fpLog) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fpIsolations are the isolation levels to measure: sandbox only where
// runsc is installed (CI=true requires it).
func fpIsolations(tb testing.TB) []runtime.Isolation {
	if _, err := os.Stat(runtime.DefaultRunsc); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and %s is missing: the sandbox benchmarks must run", runtime.DefaultRunsc)
		}
		tb.Logf("%s is missing: sandbox isolation not measured", runtime.DefaultRunsc)
		return []runtime.Isolation{runtime.Container}
	}
	return []runtime.Isolation{runtime.Container, runtime.Sandbox}
}

// deploy deploys m (fpManifest's) as id and checks that it runs; it
// returns the agent's container. Deploy does not change m.
func (e *fpEnv) deploy(tb testing.TB, id string, m *manifest.Manifest) string {
	tb.Helper()
	a, err := e.s.Deploy(context.Background(), agents.DeployRequest{Manifest: m, ID: id, Actor: fpActor})
	if err != nil || a.Status.State != agents.StateRunning {
		tb.Fatalf("deploy %s: %+v, %v", id, a.Status, err)
	}
	return a.Status.Container
}

// ctrRun is `ctr run -d` of the tool image as cid with the flags ctr has
// for what the service sets: read-only root, the default seccomp profile,
// the memory and CPU limits, a log file, the same runc root or gVisor
// wrapper. The user is the image's (ctr takes it from the image config, as
// the service does). ctr 1.6 has no flag for the pids limit, the empty
// capability sets or the tmpfs on /tmp.
func (e *fpEnv) ctrRun(tb testing.TB, iso runtime.Isolation, cid string) {
	args := e.ctrArgs("run", "-d", "--read-only", "--seccomp", "--memory-limit", strconv.Itoa(fpMemory), "--cpus", "0.5",
		"--log-uri", "file://"+filepath.Join(e.dir, cid+".log"))
	if iso == runtime.Sandbox {
		args = append(args, "--runc-binary", e.rt.SandboxBinary(), "--runc-root", filepath.Join(e.d.RuntimeRoot, "runsc"))
	} else {
		args = append(args, "--runc-root", filepath.Join(e.d.RuntimeRoot, "runc"))
	}
	if out, err := exec.Command(e.ctr, append(args, e.img.Name, cid)...).CombinedOutput(); err != nil {
		tb.Fatalf("ctr run: %v: %s", err, out)
	}
}

func (e *fpEnv) ctrArgs(args ...string) []string {
	return append([]string{"--address", e.d.Address, "--namespace", e.ns}, args...)
}

// processes lists the host processes of container cid (shim, runsc).
func (e *fpEnv) processes(cid string) []ctrtest.Proc {
	var out []ctrtest.Proc
	for _, p := range ctrtest.Processes(cid) {
		if slices.ContainsFunc(p.Cmdline, func(a string) bool { return a == cid || strings.HasSuffix(a, "/"+e.ns+"/"+cid) }) {
			out = append(out, p)
		}
	}
	return out
}

func (e *fpEnv) waitGone(tb testing.TB, cids ...string) {
	tb.Helper()
	deadline := time.Now().Add(fpGone)
	for _, cid := range cids {
		for len(e.processes(cid)) > 0 {
			if time.Now().After(deadline) {
				tb.Fatalf("%s's processes outlived it by %v: %v", cid, fpGone, e.processes(cid))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func fpTimed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// fpTimes collects one side's durations.
type fpTimes []time.Duration

func (t fpTimes) mean() float64 {
	var sum time.Duration
	for _, d := range t {
		sum += d
	}
	return float64(sum) / float64(len(t))
}

func (t fpTimes) median() float64 {
	s := slices.Clone(t)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return float64(s[len(s)/2])
	}
	return float64(s[len(s)/2-1]+s[len(s)/2]) / 2
}

// fpReport reports both sides' means and medians in ms and the ratios.
func fpReport(b *testing.B, name string, ours, theirs fpTimes) {
	if len(ours) == 0 || len(theirs) == 0 {
		return
	}
	b.ReportMetric(ours.mean()/1e6, name+"-ms/op")
	b.ReportMetric(theirs.mean()/1e6, "ctr-ms/op")
	b.ReportMetric(ours.median()/1e6, name+"-p50-ms")
	b.ReportMetric(theirs.median()/1e6, "ctr-p50-ms")
	b.ReportMetric(ours.mean()/theirs.mean(), "ratio")
	b.ReportMetric(ours.median()/theirs.median(), "p50-ratio")
}

// BenchmarkDeployVsCtrRun times Service.Deploy of the sample tool agent
// until its status is running (Deploy returns once the task has started,
// as `ctr run -d` does) against `ctr run -d` of the same image on the same
// daemon. Target: ratio <= 1.25, aim <= 1.0. One untimed round of each
// first, so that neither pays the image's first unpack.
func BenchmarkDeployVsCtrRun(b *testing.B) {
	d := ctrtest.Start(b)
	a := fpToolArchive(b)
	for _, iso := range fpIsolations(b) {
		b.Run(string(iso), func(b *testing.B) { benchDeploy(b, newFpEnv(b, d, a), iso) })
	}
}

func benchDeploy(b *testing.B, e *fpEnv, iso runtime.Isolation) {
	ctx := context.Background()
	m := fpManifest(b, iso)
	round := func(i int, timed bool) (ours, theirs time.Duration) {
		id, cid := fmt.Sprintf("dep-%d", i), fmt.Sprintf("ctr-%d", i)
		if !timed {
			id, cid = "dep-warm", "ctr-warm"
		}
		var container string
		do := func() { container = e.deploy(b, id, m) }
		run := func() { e.ctrRun(b, iso, cid) }
		// Alternate who goes first: the second runs while the first's
		// processes settle.
		if i%2 == 0 {
			ours, theirs = fpTimed(do), fpTimed(run)
		} else {
			theirs, ours = fpTimed(run), fpTimed(do)
		}
		if timed {
			b.StopTimer()
			defer b.StartTimer()
		}
		if err := e.s.Delete(ctx, id, true, fpActor); err != nil {
			b.Fatalf("delete %s: %v", id, err)
		}
		if err := e.rt.Delete(ctx, cid); err != nil {
			b.Fatalf("removing %s: %v", cid, err)
		}
		e.waitGone(b, container, cid)
		return ours, theirs
	}
	round(0, false)
	var ours, theirs fpTimes
	for i := 0; b.Loop(); i++ {
		o, t := round(i, true)
		ours, theirs = append(ours, o), append(theirs, t)
	}
	fpReport(b, "deploy", ours, theirs)
}

// BenchmarkTaskVsCtrExec times one task's round trip on a running tool
// agent (Service.RunTask then WaitTask: recorded, run through task.Exec
// with its JSON on stdin, its JSON output checked and recorded) against
// `ctr task exec` of the same command with the same stdin. Target: ratio
// <= 1.25.
func BenchmarkTaskVsCtrExec(b *testing.B) {
	d := ctrtest.Start(b)
	a := fpToolArchive(b)
	for _, iso := range fpIsolations(b) {
		b.Run(string(iso), func(b *testing.B) { benchTask(b, newFpEnv(b, d, a), iso) })
	}
}

func benchTask(b *testing.B, e *fpEnv, iso runtime.Isolation) {
	ctx := context.Background()
	cid := e.deploy(b, "task-bench", fpManifest(b, iso))
	b.Cleanup(func() { e.s.Delete(context.Background(), "task-bench", true, fpActor) })
	ours := func() {
		t, err := e.s.RunTask(ctx, agents.TaskRequest{Agent: "task-bench", Input: json.RawMessage(fpTaskInput), Actor: fpActor})
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			t, err = e.s.WaitTask(wctx, t.ID)
			cancel()
		}
		if err != nil || t.State != agents.TaskSucceeded || string(bytes.TrimSpace(t.Output)) != fpTaskOutput {
			b.Fatalf("task: %s %q %s, %v", t.State, t.Output, t.Error, err)
		}
	}
	n := 0
	theirs := func() {
		n++
		cmd := exec.Command(e.ctr, e.ctrArgs("task", "exec", "--exec-id", fmt.Sprintf("ctr-%d", n), cid, "/agent", "task")...)
		cmd.Stdin = strings.NewReader(fpTaskInput)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || string(bytes.TrimSpace(out)) != fpTaskOutput {
			b.Fatalf("ctr task exec: %v: %q %s", err, out, stderr.Bytes())
		}
	}
	ours()
	theirs()
	var to, tt fpTimes
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			to, tt = append(to, fpTimed(ours)), append(tt, fpTimed(theirs))
		} else {
			tt, to = append(tt, fpTimed(theirs)), append(to, fpTimed(ours))
		}
	}
	fpReport(b, "task", to, tt)
}

// fpAgents is how many agents the footprint runs.
const fpAgents = 50

func requireFootprint(b *testing.B) {
	if os.Getenv("OMERTA_BENCH_FOOTPRINT") != "1" {
		b.Skip("the footprint runs 50 agents for minutes: set OMERTA_BENCH_FOOTPRINT=1")
	}
}

// BenchmarkFootprint50 runs the real omertad (built from
// ./appliance/cmd/omerta, or $OMERTA_BENCH_OMERTA) against a private
// containerd, deploys 50 tool agents through its API, and once all run and
// it has settled measures over 30 s: its CPU (utime+stime from
// /proc/PID/stat over wall time, % of one core), its VmRSS, and the
// reconcile passes it made meanwhile from its own
// omerta_agents_reconcile_seconds histogram. Targets: CPU < 2 %, RSS <
// 60 MB, one pass < 100 ms. Every agent is deleted at the end and the
// namespace checked empty.
func BenchmarkFootprint50(b *testing.B) {
	requireFootprint(b)
	d := ctrtest.Start(b)
	ns := d.Namespace(b)
	a := fpToolArchive(b)
	od := startOmertad(b, d, ns, a)
	c := apiclient.New(od.sock, apiclient.WithTimeout(60*time.Second))
	defer c.Close()
	od.waitImage(b, c, a.Ref)
	for b.Loop() {
		deployed := fpTimed(func() { od.deployAll(b, c) })
		b.ReportMetric(float64(deployed.Milliseconds())/fpAgents, "api-deploy-ms/agent")
		m := od.measureIdle(b, c, 5*time.Second, 30*time.Second)
		m.report(b)
		od.deleteAll(b, c)
		requireEmpty(b, d, ns)
	}
	od.stop(b)
}

// BenchmarkFootprint50Reconcile is the second variant of the reconcile
// figure: Service.Reconcile timed in-process over 50 running tool agents
// on the private containerd, with the runtime calls a pass makes timed
// alone beside it (List: containers and tasks; Orphans: containers, tasks,
// snapshots, leases; the task list on its own, which containerd 1.6
// answers by asking every task's shim for its state, one after another),
// and a pass while the telemetry sample (MetricsAll) runs, as it does in
// omertad every 10 s. Target: one pass < 100 ms.
func BenchmarkFootprint50Reconcile(b *testing.B) {
	requireFootprint(b)
	d := ctrtest.Start(b)
	e := newFpEnv(b, d, fpToolArchive(b))
	ctx := context.Background()
	m := fpManifest(b, runtime.Container)
	ids := make([]string, fpAgents)
	for i := range fpAgents {
		ids[i] = e.deploy(b, fpAgentID(i), m)
	}
	c := d.Client(b)
	const passes = 20
	// Each step returns the time of what it measures.
	timed := func(f func() error) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			start := time.Now()
			err := f()
			return time.Since(start), err
		}
	}
	steps := []struct {
		name string
		fn   func() (time.Duration, error)
	}{
		{"reconcile", timed(func() error { return e.s.Reconcile(ctx) })},
		{"list", timed(func() error { _, err := e.rt.List(ctx); return err })},
		{"orphans", timed(func() error { _, err := e.rt.Orphans(ctx, func(string) bool { return true }); return err })},
		{"tasklist", timed(func() error {
			_, err := c.TaskService().List(namespaces.WithNamespace(ctx, e.ns), &tasks.ListTasksRequest{})
			return err
		})},
		// The telemetry sample omertad takes every 10 s beside the passes.
		{"metricsall", timed(func() error { _, err := e.rt.MetricsAll(ctx); return err })},
		{"reconcile-during-metricsall", func() (time.Duration, error) {
			done := make(chan error, 1)
			go func() { _, err := e.rt.MetricsAll(ctx); done <- err }()
			d, err := timed(func() error { return e.s.Reconcile(ctx) })()
			return d, errors.Join(err, <-done)
		}},
	}
	for b.Loop() {
		for _, st := range steps {
			var t fpTimes
			for range passes {
				d, err := st.fn()
				if err != nil {
					b.Fatalf("%s: %v", st.name, err)
				}
				t = append(t, d)
			}
			b.ReportMetric(t.mean()/1e6, st.name+"-ms")
			b.ReportMetric(float64(slices.Max(t))/1e6, st.name+"-max-ms")
		}
	}
	b.StopTimer()
	for i := range fpAgents {
		if err := e.s.Delete(ctx, fpAgentID(i), true, fpActor); err != nil {
			b.Errorf("delete %s: %v", fpAgentID(i), err)
		}
	}
	e.waitGone(b, ids...)
	requireEmpty(b, d, e.ns)
}

// omertad is a running omertad process.
type omertad struct {
	cmd    *exec.Cmd
	sock   string
	dir    string
	stderr *os.File
	done   chan error
}

// startOmertad writes a configuration whose agents section points at d's
// namespace ns, the tool archive as the bundled image and a catalog entry
// fp-tool (the shipped entry as fpManifest makes it), and starts omertad.
func startOmertad(b *testing.B, d *ctrtest.Daemon, ns string, a fpArchive) *omertad {
	b.Helper()
	dir, err := os.MkdirTemp("", "omerta-fp")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	bin := omertadBinary(b, dir)
	bundled, catDir := filepath.Join(dir, "bundled"), filepath.Join(dir, "catalog")
	writeBundled(b, bundled, a)
	m := fpManifest(b, runtime.Container)
	m.Metadata.ID = "fp-tool"
	entry, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	fpWrite(b, filepath.Join(catDir, "fp-tool.json"), entry)
	od := &omertad{sock: filepath.Join(dir, "omertad.sock"), dir: dir, done: make(chan error, 1)}
	cfg := filepath.Join(dir, "omerta.yaml")
	fpWrite(b, cfg, fmt.Appendf(nil, `daemon:
  socket: %s
  state_dir: %s
  shutdown_timeout: 30s
agents:
  containerd: %s
  namespace: %s
  catalog_dir: %s
  bundled_dir: %s
  log_dir: %s
  run_dir: %s
  runtime_root: %s
`, od.sock, filepath.Join(dir, "state"), d.Address, ns, catDir, bundled, filepath.Join(dir, "logs"), filepath.Join(dir, "run"), d.RuntimeRoot))
	if od.stderr, err = os.Create(filepath.Join(dir, "omertad.log")); err != nil {
		b.Fatal(err)
	}
	od.cmd = exec.Command(bin, "daemon", "--config", cfg)
	od.cmd.Stdout, od.cmd.Stderr = od.stderr, od.stderr
	od.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := od.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { od.done <- od.cmd.Wait() }()
	b.Cleanup(func() { od.kill(b) })
	od.waitHealthy(b)
	return od
}

// omertadBinary is $OMERTA_BENCH_OMERTA, else omerta built into dir.
func omertadBinary(b *testing.B, dir string) string {
	if p := os.Getenv("OMERTA_BENCH_OMERTA"); p != "" {
		return p
	}
	bin := filepath.Join(dir, "omerta")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./appliance/cmd/omerta")
	cmd.Dir = fpModuleRoot(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building omerta: %v\n%s", err, out)
	}
	return bin
}

func writeBundled(b *testing.B, dir string, a fpArchive) {
	data, err := safeio.ReadFile(a.Path, 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	fpWrite(b, filepath.Join(dir, "tool.oci.tar"), data)
	idx, _ := json.Marshal(map[string]any{"tool": map[string]any{"ref": a.Ref, "digest": a.Digest, "size": len(data), "archive": "tool.oci.tar"}})
	fpWrite(b, filepath.Join(dir, "index.json"), idx)
}

func fpWrite(b *testing.B, path string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

func (od *omertad) log() string {
	b, _ := safeio.ReadFile(od.stderr.Name(), 1<<20)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

func (od *omertad) waitHealthy(b *testing.B) {
	c := apiclient.New(od.sock, apiclient.WithTimeout(time.Second))
	defer c.Close()
	od.eventually(b, 30*time.Second, "omertad's health", func() bool { _, err := c.Health(context.Background()); return err == nil })
}

// eventually polls ok every 100 ms for at most within, failing with
// omertad's log.
func (od *omertad) eventually(b *testing.B, within time.Duration, what string, ok func() bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		select {
		case err := <-od.done:
			b.Fatalf("omertad exited (%v) waiting for %s; its log:\n%s", err, what, od.log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("no %s within %v; omertad's log:\n%s", what, within, od.log())
		}
	}
}

func (od *omertad) waitImage(b *testing.B, c *apiclient.Client, ref string) {
	od.eventually(b, 60*time.Second, "bundled image "+ref, func() bool {
		l, err := c.Images(context.Background())
		return err == nil && slices.ContainsFunc(l.Images, func(i apitype.Image) bool { return i.Name == ref })
	})
}

func fpAgentID(i int) string { return fmt.Sprintf("fp-%02d", i) }

// deployAll deploys the 50 agents one after another and waits until the
// list shows them all running.
func (od *omertad) deployAll(b *testing.B, c *apiclient.Client) {
	ctx := context.Background()
	for i := range fpAgents {
		a, err := c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "fp-tool", ID: fpAgentID(i)})
		if err != nil || a.Status.State != string(agents.StateRunning) {
			b.Fatalf("deploy %s: %+v, %v\nomertad's log:\n%s", fpAgentID(i), a.Status, err, od.log())
		}
	}
	od.eventually(b, 2*time.Minute, "50 running agents", func() bool {
		l, err := c.Agents(ctx)
		if err != nil || len(l.Agents) != fpAgents {
			return false
		}
		return !slices.ContainsFunc(l.Agents, func(a apitype.AgentSummary) bool { return a.Status.State != string(agents.StateRunning) })
	})
}

// idle is what measureIdle saw.
type idle struct {
	wall            time.Duration
	cpu             time.Duration
	rssKB, hwmKB    int64
	anonKB, fileKB  int64
	passes, slow    float64
	passSum         float64
	heapKB, threads int64
	goroutines      float64
}

// measureIdle waits settle, then measures omertad over window: nothing
// talks to it meanwhile (its /metrics is read just before and after).
func (od *omertad) measureIdle(b *testing.B, c *apiclient.Client, settle, window time.Duration) idle {
	time.Sleep(settle)
	before := scrape(b, c)
	pid := od.cmd.Process.Pid
	cpu0, start := procCPU(b, pid), time.Now()
	time.Sleep(window)
	cpu1, wall := procCPU(b, pid), time.Since(start)
	status := procStatus(b, pid)
	after := scrape(b, c)
	const h = "omerta_agents_reconcile_seconds"
	m := idle{wall: wall, cpu: cpu1 - cpu0, rssKB: status["VmRSS"], hwmKB: status["VmHWM"],
		anonKB: status["RssAnon"], fileKB: status["RssFile"], threads: status["Threads"],
		passes:  after[h+"_count"] - before[h+"_count"],
		passSum: after[h+"_sum"] - before[h+"_sum"],
		heapKB:  int64(after["go_memstats_heap_inuse_bytes"] / 1024), goroutines: after["go_goroutines"]}
	m.slow = m.passes - (after[h+`_bucket{le="0.1"}`] - before[h+`_bucket{le="0.1"}`])
	return m
}

func (m idle) report(b *testing.B) {
	pct := 100 * float64(m.cpu) / float64(m.wall)
	b.ReportMetric(pct, "idle-cpu-%")
	b.ReportMetric(float64(m.rssKB)/1024, "rss-MB")
	b.ReportMetric(float64(m.hwmKB)/1024, "rss-peak-MB")
	b.ReportMetric(float64(m.anonKB)/1024, "rss-anon-MB")
	b.ReportMetric(float64(m.fileKB)/1024, "rss-file-MB")
	b.ReportMetric(float64(m.heapKB)/1024, "heap-inuse-MB")
	if m.passes > 0 {
		b.ReportMetric(1000*m.passSum/m.passes, "reconcile-ms/pass")
	}
	b.ReportMetric(m.passes, "passes")
	b.ReportMetric(m.slow, "passes>100ms")
	b.Logf("omertad with %d agents, idle over %v: CPU %v (%.2f %% of one core; target < 2 %%), VmRSS %.1f MiB (target < 60 MB; peak %.1f, anonymous %.1f, file %.1f), "+
		"Go heap in use %.1f MB, %d threads, %.0f goroutines; %.0f reconcile passes, mean %.1f ms (target < 100 ms), %.0f over 100 ms",
		fpAgents, m.wall.Round(time.Millisecond), m.cpu, pct, float64(m.rssKB)/1024, float64(m.hwmKB)/1024, float64(m.anonKB)/1024, float64(m.fileKB)/1024,
		float64(m.heapKB)/1024, m.threads, m.goroutines, m.passes, 1000*m.passSum/max(m.passes, 1), m.slow)
	var missed []string
	if pct >= 2 {
		missed = append(missed, "idle CPU")
	}
	if m.rssKB >= 60<<10 {
		missed = append(missed, "RSS")
	}
	if m.passes == 0 || m.slow > 0 {
		missed = append(missed, "reconcile pass")
	}
	if len(missed) > 0 {
		b.Logf("TARGET MISSED: %s", strings.Join(missed, ", "))
	}
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux
// whatever the kernel's own tick.
const userHZ = 100

// procCPU is the process's user and system time, all its threads.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := safeio.ReadFile(fmt.Sprintf("/proc/%d/stat", pid), 4096)
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields are counted from after its closing one, state first.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ
}

// procStatus reads the numeric fields of /proc/PID/status (kB for sizes).
func procStatus(b *testing.B, pid int) map[string]int64 {
	data, err := safeio.ReadFile(fmt.Sprintf("/proc/%d/status", pid), 64<<10)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// scrape reads omertad's /metrics: each sample line's name and labels as
// written, and its value.
func scrape(b *testing.B, c *apiclient.Client) map[string]float64 {
	text, err := c.Metrics(context.Background())
	if err != nil {
		b.Fatalf("reading /metrics: %v", err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(strings.TrimSpace(line), ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// deleteAll deletes the agents with their data and waits until the list is
// empty.
func (od *omertad) deleteAll(b *testing.B, c *apiclient.Client) {
	ctx := context.Background()
	for i := range fpAgents {
		if err := c.DeleteAgent(ctx, fpAgentID(i), true); err != nil {
			b.Errorf("delete %s: %v", fpAgentID(i), err)
		}
	}
	od.eventually(b, time.Minute, "an empty agent list", func() bool {
		l, err := c.Agents(ctx)
		return err == nil && len(l.Agents) == 0
	})
}

// requireEmpty fails unless namespace ns holds no container, task, lease
// or agent snapshot and no shim of it runs.
func requireEmpty(b *testing.B, d *ctrtest.Daemon, ns string) {
	c := d.Client(b)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	var left []string
	deadline := time.Now().Add(fpGone)
	for {
		left = left[:0]
		if cs, err := c.ContainerService().List(ctx); err != nil || len(cs) > 0 {
			left = append(left, fmt.Sprintf("%d containers (%v)", len(cs), err))
		}
		if ts, err := c.TaskService().List(ctx, &tasks.ListTasksRequest{}); err != nil || len(ts.GetTasks()) > 0 {
			left = append(left, fmt.Sprintf("%d tasks (%v)", len(ts.GetTasks()), err))
		}
		if ls, err := c.LeasesService().List(ctx); err != nil || len(ls) > 0 {
			left = append(left, fmt.Sprintf("%d leases (%v)", len(ls), err))
		}
		err := c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			if strings.HasPrefix(i.Name, "fp-") {
				left = append(left, "snapshot "+i.Name)
			}
			return nil
		})
		if err != nil {
			left = append(left, fmt.Sprintf("snapshots (%v)", err))
		}
		if p := ctrtest.Processes(ns); len(p) > 0 {
			left = append(left, fmt.Sprintf("%d processes (%v)", len(p), p[0]))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		b.Errorf("left in namespace %s after deleting every agent: %s", ns, strings.Join(left, ", "))
	}
	b.ReportMetric(float64(len(left)), "left-behind")
}

// stop sends SIGTERM and requires a clean exit.
func (od *omertad) stop(b *testing.B) {
	od.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-od.done:
		od.done <- err
		if err != nil {
			b.Errorf("omertad after SIGTERM: %v; its log:\n%s", err, od.log())
		}
	case <-time.After(45 * time.Second):
		b.Errorf("omertad still runs 45 s after SIGTERM")
	}
}

func (od *omertad) kill(b *testing.B) {
	select {
	case err := <-od.done:
		od.done <- err
	default:
		od.cmd.Process.Kill()
		<-od.done
	}
	od.stderr.Close()
	if b.Failed() {
		b.Logf("omertad's log:\n%s", od.log())
	}
}

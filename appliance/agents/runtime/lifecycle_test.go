package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
)

// TestRuntime runs every test that needs containerd against one private
// daemon (starting one per test would triple the run time); each subtest
// has its own namespace, removed when it ends.
func TestRuntime(t *testing.T) {
	s := newSuite(t)
	perIsolation := []struct {
		name string
		fn   func(*testing.T, *suite, Isolation)
	}{
		{"lifecycle", testLifecycle},
		{"lockdown", testLockdown},
		{"forkbomb", testForkBomb},
		{"oom", testOOM},
		{"failedstart", testFailedStart},
		{"start timeout", testStartTimeout},
		{"lost task", testLostTask},
	}
	for _, tc := range perIsolation {
		t.Run(tc.name, func(t *testing.T) {
			for _, iso := range isolations(t) {
				t.Run(string(iso), func(t *testing.T) { tc.fn(t, s, iso) })
			}
		})
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"errors", testErrors},
		{"image user", testImageUser},
		{"exec", testExec},
		{"exec stopped", testExecStopped},
		{"logs", testLogs},
		{"orphans", testOrphans},
		{"lease sweep", testLeaseSweep},
		{"import", testImport},
		{"reconnect", testReconnect},
		{"foreign shim", testForeignShim},
		{"gpus", testGPUs},
		{"cgroups", testCgroups},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

func testLifecycle(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "life-" + string(iso)
	// The shell exits on SIGTERM: Stop's grace ends with a clean exit.
	sp := e.spec(id, iso, "/bin/sh", "-c", `trap "exit 3" TERM; echo started; while :; do sleep 0.1; done`)
	sp.Labels = map[string]string{"omerta.dev/agent": "a1"}
	if err := e.rt.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.Delete(context.Background(), id) })
	if st := e.waitState(t, id, Created, time.Second); st.Isolation != iso || st.Labels["omerta.dev/agent"] != "a1" {
		t.Errorf("created: %+v", st)
	}
	if err := e.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := e.waitState(t, id, Running, 5*time.Second); st.Pid == 0 || st.Image != e.image.Name {
		t.Errorf("running: %+v", st)
	}
	if got := e.sh(t, id, "echo hello; id -u"); got != "hello\n65534" {
		t.Errorf("exec output %q", got)
	}
	list, err := e.rt.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].State != Running {
		t.Errorf("List = %+v, %v", list, err)
	}
	if err := e.rt.Stop(ctx, id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st := e.waitState(t, id, Stopped, time.Second)
	if st.ExitCode != 3 || st.ExitedAt.IsZero() || st.OOMKilled {
		t.Errorf("after a graceful stop: %+v, want exit 3", st)
	}
	// Start again: the same container runs a new task.
	if err := e.rt.Start(ctx, id); err != nil {
		t.Fatalf("second start: %v", err)
	}
	e.waitState(t, id, Running, 5*time.Second)
	if err := e.rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Status(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("status after delete: %v, want ErrNotFound", err)
	}
	assertNothingLeft(t, e, id)
}

// assertNothingLeft checks that no container, task, snapshot or process of
// id remains.
func assertNothingLeft(t testing.TB, e *env, id string) {
	t.Helper()
	if l, err := e.rt.List(context.Background()); err != nil || len(l) != 0 {
		t.Errorf("List = %+v, %v; want nothing", l, err)
	}
	o, err := e.rt.Orphans(context.Background(), func(string) bool { return false })
	if err != nil || !o.Empty() {
		t.Errorf("left behind: %+v, %v", o, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ctrtest.Processes(id)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of %s left: %v", id, left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testFailedStart(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "bogus-" + string(iso)
	if err := e.rt.Create(ctx, e.spec(id, iso, "/no/such/program")); err != nil {
		t.Fatal(err)
	}
	err := e.rt.Start(ctx, id)
	if !errors.Is(err, ErrStartFailed) {
		t.Fatalf("start of a missing program: %v, want ErrStartFailed", err)
	}
	// Under gVisor the task was CREATED with shim, gofer and sandbox
	// running when the start failed: all must be gone now.
	assertNothingLeft(t, e, id)
}

// testStartTimeout: a start cut off by its deadline says so and, like any
// failed start, leaves no task, container, shim or sandbox behind.
func testStartTimeout(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "slow-" + string(iso)
	if err := e.rt.Create(ctx, e.spec(id, iso)); err != nil {
		t.Fatal(err)
	}
	e.rt.startTimeout = time.Millisecond
	err := e.rt.Start(ctx, id)
	e.rt.startTimeout = DefaultStartTimeout
	if !errors.Is(err, ErrStartFailed) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("start with a 1 ms deadline: %v, want ErrStartFailed and ErrTimeout", err)
	}
	assertNothingLeft(t, e, id)
}

func testErrors(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	e.run(t, e.spec("dup", Container))
	checks := []struct {
		what string
		err  error
		want error
	}{
		{"create twice", e.rt.Create(ctx, e.spec("dup", Container)), ErrExists},
		{"start a running one", e.rt.Start(ctx, "dup"), ErrState},
		{"start a missing one", e.rt.Start(ctx, "nope"), ErrNotFound},
		{"stop a missing one", e.rt.Stop(ctx, "nope", 0), ErrNotFound},
		{"delete a missing one", e.rt.Delete(ctx, "nope"), ErrNotFound},
		{"missing image", e.rt.Create(ctx, Spec{ID: "x", Image: "omerta.test/none:1"}), ErrNotFound},
		{"bad id", e.rt.Create(ctx, Spec{ID: "../x", Image: e.image.Name}), ErrInvalid},
		{"wrong digest", e.rt.Create(ctx, Spec{ID: "x", Image: e.image.Name,
			Digest: "sha256:" + strings.Repeat("0", 64)}), ErrDigestMismatch},
	}
	for _, c := range checks {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.err, c.want)
		}
	}
	_, err := e.rt.Exec(ctx, "nope", ExecSpec{Args: []string{"true"}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("exec in a missing container: %v", err)
	}
	// Pinned by each of its three digests, the image is accepted.
	for i, d := range []string{e.image.Digest, e.image.Manifest, e.image.Config} {
		id := "pinned" + string(rune('a'+i))
		if err := e.rt.Create(ctx, Spec{ID: id, Image: e.image.Name, Digest: d}); err != nil {
			t.Errorf("create pinned by %s: %v", d, err)
		}
		e.rt.Delete(ctx, id)
	}
}

func testLogs(t *testing.T, s *suite) {
	e := s.newEnv(t, WithLogRotation(256, 2))
	ctx := context.Background()
	id := "logger"
	e.run(t, e.spec(id, Container, "/bin/sh", "-c",
		"echo err-line >&2; i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.05; done"))
	path, err := e.rt.Logs(id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), "line-1\n") && strings.Contains(string(b), "err-line") && len(b) > 256
	})
	if rotated, err := e.rt.Rotate(id); err != nil || !rotated {
		t.Fatalf("Rotate = %v, %v", rotated, err)
	}
	if b, _ := os.ReadFile(path + ".1"); !strings.Contains(string(b), "line-1\n") {
		t.Errorf("rotated log holds %q", b)
	}
	// The shim keeps writing to the file it opened with O_APPEND: after
	// the truncation its lines start at offset 0 (no hole of NULs).
	waitFor(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n") >= 2
	})
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "line-") || strings.Contains(string(b), "line-1\n") {
		t.Errorf("log after rotation starts %q", b[:min(len(b), 40)])
	}
	if err := e.rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.PurgeLogs(id); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(path + "*"); len(m) != 0 {
		t.Errorf("logs left after PurgeLogs: %v", m)
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testReconnect(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "survivor"
	e.run(t, e.spec(id, Container))
	before := e.waitState(t, id, Running, 5*time.Second)
	s.d.Restart(t)
	// The client reconnects by itself; the shim kept the task running.
	var st Status
	waitFor(t, 15*time.Second, func() bool {
		var err error
		st, err = e.rt.Status(ctx, id)
		return err == nil
	})
	if st.State != Running || st.Pid != before.Pid {
		t.Errorf("after containerd restarted: %+v, before %+v", st, before)
	}
	if got := e.sh(t, id, "echo alive"); got != "alive" {
		t.Errorf("exec after restart: %q", got)
	}
}

// testImageUser: a user named in the image's /etc/passwd is looked up; an
// image that asks for root runs as nobody.
func testImageUser(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct{ user, want string }{{"agent", "1000:1000"}, {"root", "65534:65534"}, {"1000:1000", "1000:1000"}} {
		a := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/user:" + strings.ReplaceAll(tc.user, ":", "-"), User: tc.user})
		imgs, err := e.rt.ImportArchive(ctx, a.Path)
		if err != nil {
			t.Fatal(err)
		}
		id := "user-" + strings.ReplaceAll(tc.user, ":", "-")
		e.run(t, Spec{ID: id, Image: imgs[0].Name})
		if got := e.sh(t, id, `echo "$(id -u):$(id -g)"`); got != tc.want {
			t.Errorf("image user %q runs as %s, want %s", tc.user, got, tc.want)
		}
	}
}

package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
)

// env is one test's Runtime on the shared private containerd.
type env struct {
	d     *ctrtest.Daemon
	rt    *Runtime
	image Image
	dir   string
}

// suite is the private containerd and the test image that all subtests
// of one top-level test share.
type suite struct {
	d       *ctrtest.Daemon
	archive ctrtest.Archive
}

func newSuite(t testing.TB) *suite {
	t.Helper()
	d := ctrtest.Start(t)
	return &suite{d: d, archive: ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{})}
}

// newEnv gives a test its own namespace and Runtime, with the image
// imported.
func (s *suite) newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	// The directory first: cleanups run last-in first-out, and the
	// namespace's purge may still need the gVisor wrapper in it.
	dir := t.TempDir()
	ns := s.d.Namespace(t)
	base := []Option{WithNamespace(ns), WithLogDir(filepath.Join(dir, "logs")),
		WithRunDir(filepath.Join(dir, "run")), WithRuntimeRoot(s.d.RuntimeRoot)}
	rt, err := New(s.d.Client(t), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := rt.ImportArchive(context.Background(), s.archive.Path)
	if err != nil {
		t.Fatalf("importing busybox: %v", err)
	}
	if len(imgs) != 1 {
		t.Fatalf("imported %+v, want one image", imgs)
	}
	return &env{d: s.d, rt: rt, image: imgs[0], dir: dir}
}

// spec is a container spec for the busybox image.
func (e *env) spec(id string, iso Isolation, args ...string) Spec {
	return Spec{ID: id, Image: e.image.Name, Isolation: iso, Args: args, MemoryBytes: 64 << 20, Pids: 64}
}

// run creates and starts a container, deleting it at cleanup.
func (e *env) run(t testing.TB, s Spec) {
	t.Helper()
	ctx := context.Background()
	if err := e.rt.Create(ctx, s); err != nil {
		t.Fatalf("create %s: %v", s.ID, err)
	}
	t.Cleanup(func() { e.rt.Delete(context.Background(), s.ID) })
	if err := e.rt.Start(ctx, s.ID); err != nil {
		t.Fatalf("start %s: %v", s.ID, err)
	}
}

// sh runs a shell command in the container and returns its stdout,
// failing the test on a non-zero exit.
func (e *env) sh(t testing.TB, id, script string) string {
	t.Helper()
	res, err := e.rt.Exec(context.Background(), id, ExecSpec{Args: []string{"/bin/sh", "-c", script}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("exec %q in %s: %v", script, id, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %q in %s: exit %d, stdout %q, stderr %q", script, id, res.ExitCode, res.Stdout, res.Stderr)
	}
	return strings.TrimSpace(string(res.Stdout))
}

// waitState polls Status until the container reaches want.
func (e *env) waitState(t testing.TB, id string, want State, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := e.rt.Status(context.Background(), id)
		if err != nil {
			t.Fatalf("status %s: %v", id, err)
		}
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s after %v, want %s", id, st.State, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isolations(t testing.TB) []Isolation {
	t.Helper()
	if _, err := os.Stat(DefaultRunsc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing: the sandbox tests must run", DefaultRunsc)
		}
		t.Logf("%s is missing: sandbox isolation not tested", DefaultRunsc)
		return []Isolation{Container}
	}
	return []Isolation{Container, Sandbox}
}

// processesOf lists the host processes of container id of e's namespace
// (shim, runsc) by their command lines.
func processesOf(e *env, id string) []ctrtest.Proc {
	var out []ctrtest.Proc
	for _, p := range ctrtest.Processes(id) {
		for _, a := range p.Cmdline {
			if a == id || strings.HasSuffix(a, "/"+e.rt.ns+"/"+id) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

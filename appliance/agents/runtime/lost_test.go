package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
)

// testLostTask: containerd loses a running task the way 1.6 does when its
// client dies in the middle of creating or deleting it: containerd no
// longer knows the task while its shim and container run on, and the
// container's name cannot take a task again. Here containerd is stopped,
// the task's bundle removed, and containerd killed and started again.
// Orphans finds the lost task (the caller knowing the container does not
// hide it; a call working on it does), and Cleanup removes the container's
// process, the shim, its socket and the cgroup, after which the name takes
// a task again.
func testLostTask(t *testing.T, s *suite, iso Isolation) {
	t.Run("state kept", func(t *testing.T) { lostTask(t, s, iso, false) })
	// runc or runsc lost the container's state too: the shim's children,
	// in the container's cgroup, are killed before the shim.
	t.Run("state gone", func(t *testing.T) { lostTask(t, s, iso, true) })
}

func lostTask(t *testing.T, s *suite, iso Isolation, dropState bool) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "lost-" + string(iso)
	e.run(t, e.spec(id, iso))
	before := e.waitState(t, id, Running, 10*time.Second)
	shim := shimOf(t, e, id)
	sock := shimSocketPath(e.rt.socketDir, s.d.Address, e.rt.ns, id)
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the shim's socket: %v", err)
	}
	if len(cgroupDirs(t, e.rt.ns, id)) == 0 {
		t.Fatal("the container has no cgroup to check")
	}
	kind := map[Isolation]string{Container: kindRunc, Sandbox: kindRunsc}[iso]
	wantKind, wantPid := kind, int(before.Pid)
	if dropState {
		dropRuntimeState(t, e, kind, id)
		wantKind, wantPid = "", 0
	}
	loseTask(t, s.d, e.rt.ns, id, shim)
	waitFor(t, 15*time.Second, func() bool { _, err := e.rt.Status(ctx, id); return err == nil })
	if st, _ := e.rt.Status(ctx, id); st.State == Running || st.Pid != 0 {
		t.Fatalf("containerd still knows the task: %+v", st)
	}
	known := func(string) bool { return true }
	done := e.rt.busy(id)
	if o, err := e.rt.Orphans(ctx, known); err != nil || len(o.Lost) != 0 {
		t.Errorf("a container a call works on was reported lost: %+v, %v", o, err)
	}
	done()
	o, err := e.rt.Orphans(ctx, known)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Lost) != 1 || o.Lost[0].ID != id || !slices.Equal(o.Lost[0].Shims, []int{shim}) ||
		o.Lost[0].Runtime != wantKind || o.Lost[0].Pid != wantPid {
		t.Fatalf("Orphans().Lost = %+v, want %s with shim %d, runtime %q, pid %d", o.Lost, id, shim, wantKind, wantPid)
	}
	if len(o.Containers)+len(o.Tasks)+len(o.Snapshots)+len(o.Leases) != 0 {
		t.Errorf("Orphans = %+v, want only the lost task", o)
	}
	if err := e.rt.Cleanup(ctx, o); err != nil {
		t.Fatal(err)
	}
	checkLostRemoved(t, e, id, kind, shim, int(before.Pid), sock)
	if o, err := e.rt.Orphans(ctx, known); err != nil || !o.Empty() {
		t.Errorf("after Cleanup: %+v, %v", o, err)
	}
	// containerd refused this before: "container with given ID already exists".
	if err := e.rt.Start(ctx, id); err != nil {
		t.Fatalf("starting the container again after its lost task was removed: %v", err)
	}
	e.waitState(t, id, Running, 10*time.Second)
}

func checkLostRemoved(t *testing.T, e *env, id, kind string, shim, pid int, sock string) {
	t.Helper()
	for _, p := range []int{shim, pid} {
		if alive("/proc", p) {
			t.Errorf("process %d still runs: %q", p, readCmdline("/proc", p))
		}
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the shim's socket %s is still there: %v", sock, err)
	}
	if left := cgroupDirs(t, e.rt.ns, id); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	_, root := e.rt.stateRoot(kind)
	if ids, err := stateIDs(kind, root); err != nil || slices.Contains(ids, id) {
		t.Errorf("%s still holds %s: %v, %v", kind, id, ids, err)
	}
}

// dropRuntimeState removes what runc or runsc keeps of container id, as
// if it had never recorded it.
func dropRuntimeState(t *testing.T, e *env, kind, id string) {
	t.Helper()
	_, root := e.rt.stateRoot(kind)
	paths := []string{filepath.Join(root, id)}
	if kind == kindRunsc {
		var err error
		if paths, err = filepath.Glob(filepath.Join(root, "*"+id+"*")); err != nil || len(paths) == 0 {
			t.Fatalf("runsc's state of %s: %v, %v", id, paths, err)
		}
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := stateIDs(kind, root); err != nil || slices.Contains(ids, id) {
		t.Fatalf("%s still holds %s: %v, %v", kind, id, ids, err)
	}
}

// loseTask makes containerd forget the task of id: with containerd
// stopped (SIGSTOP, so that it writes nothing meanwhile), the task's
// bundle goes, then containerd is killed and started again: it loads the
// tasks it finds bundles for, and the shim and container run on unknown.
func loseTask(t *testing.T, d *ctrtest.Daemon, ns, id string, shim int) {
	t.Helper()
	bundle, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", shim))
	if err != nil || !strings.HasPrefix(bundle, d.Dir+"/") || !strings.HasSuffix(bundle, "/"+ns+"/"+id) {
		t.Fatalf("the shim's bundle %q (%v) is not the task's bundle in %s", bundle, err, d.Dir)
	}
	ctrd := 0
	for _, p := range ctrtest.Processes(d.Dir) {
		if filepath.Base(p.Cmdline[0]) == "containerd" {
			ctrd = p.PID
		}
	}
	if ctrd == 0 {
		t.Fatal("containerd's process is not found")
	}
	if err := syscall.Kill(ctrd, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	err = removeBundle(bundle)
	d.Restart(t) // SIGKILL reaches a stopped process
	if err != nil {
		t.Fatal(err)
	}
}

// removeBundle unmounts the bundle's root file system and removes it,
// never through a mount.
func removeBundle(bundle string) error {
	if err := unix.Unmount(filepath.Join(bundle, "rootfs"), unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmounting the bundle's rootfs: %w", err)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(unescapeMountinfo(f[4])+"/", bundle+"/") {
			return fmt.Errorf("%s is still mounted", f[4])
		}
	}
	return os.RemoveAll(bundle)
}

// shimOf is the pid of the one shim of e's container id.
func shimOf(t *testing.T, e *env, id string) int {
	t.Helper()
	var pids []int
	for _, p := range ctrtest.Processes(id) {
		sa, ok := parseShimCmdline([]byte(strings.Join(p.Cmdline, "\x00")))
		if ok && sa.Namespace == e.rt.ns && sa.ID == id {
			pids = append(pids, p.PID)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("shims of %s: %v, want one", id, pids)
	}
	return pids[0]
}

// cgroupDirs lists the cgroups /ns/id that exist.
func cgroupDirs(t *testing.T, ns, id string) []string {
	t.Helper()
	mounts, err := cgroupMounts("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, ns, id)); err == nil {
			out = append(out, filepath.Join(m, ns, id))
		}
	}
	return out
}

// testForeignShim: a second containerd runs a container in the same
// namespace and with the same runc root. Its task is not this containerd's
// to list, yet neither its shim (another address) nor its runc container
// (that shim's child) is reported lost, and a Cleanup asked to remove it
// (a forged Orphans) checks again and touches nothing.
func testForeignShim(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	d2 := ctrtest.Start(t)
	rt2, err := New(d2.Client(t), WithNamespace(e.rt.ns), WithLogDir(filepath.Join(e.dir, "logs2")),
		WithRunDir(filepath.Join(e.dir, "run2")), WithRuntimeRoot(s.d.RuntimeRoot))
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := rt2.ImportArchive(ctx, s.archive.Path)
	if err != nil {
		t.Fatal(err)
	}
	sp := e.spec("foreign", Container)
	sp.Image = imgs[0].Name
	if err := rt2.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt2.Delete(context.Background(), "foreign"); err != nil {
			t.Errorf("deleting the other containerd's container: %v", err)
		}
	})
	if err := rt2.Start(ctx, "foreign"); err != nil {
		t.Fatal(err)
	}
	st, err := rt2.Status(ctx, "foreign")
	if err != nil || st.State != Running {
		t.Fatalf("the other containerd's container: %+v, %v", st, err)
	}
	if ids, _ := stateIDs(kindRunc, e.rt.runcRoot()); !slices.Contains(ids, "foreign") {
		t.Fatalf("the other containerd's container is not in the shared runc root: %v", ids)
	}
	o, err := e.rt.Orphans(ctx, func(string) bool { return false })
	if err != nil || !o.Empty() {
		t.Errorf("another containerd's container was reported: %+v, %v", o, err)
	}
	if err := e.rt.Cleanup(ctx, Orphans{Lost: []LostTask{{ID: "foreign", Runtime: kindRunc}}}); err != nil {
		t.Error(err)
	}
	if st2, err := rt2.Status(ctx, "foreign"); err != nil || st2.State != Running || st2.Pid != st.Pid || !alive("/proc", int(st.Pid)) {
		t.Errorf("the other containerd's container after Cleanup: %+v, %v", st2, err)
	}
}

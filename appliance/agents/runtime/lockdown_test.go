package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// procStatus parses /proc/<pid>/status as the container prints it.
func procStatus(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

const zeroCaps = "0000000000000000"

// testLockdown checks the locked-down spec from inside a running container.
func testLockdown(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	id := "locked-" + string(iso)
	sp := e.spec(id, iso)
	sp.StateDir = filepath.Join(e.dir, "state")
	sp.Volumes = []Volume{{Name: "data", Path: "/data"}}
	e.run(t, sp)

	self := procStatus(e.sh(t, id, "cat /proc/self/status"))
	init := procStatus(e.sh(t, id, "cat /proc/1/status"))
	for name, st := range map[string]map[string]string{"exec'd process": self, "init": init} {
		if st["Uid"] != "65534\t65534\t65534\t65534" || st["Gid"] != "65534\t65534\t65534\t65534" {
			t.Errorf("%s: Uid %q Gid %q, want nobody", name, st["Uid"], st["Gid"])
		}
		for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd"} {
			if st[c] != zeroCaps {
				t.Errorf("%s: %s = %q", name, c, st[c])
			}
		}
		// gVisor prints no CapAmb line; where it is printed it must be 0.
		if v, ok := st["CapAmb"]; ok && v != zeroCaps {
			t.Errorf("%s: CapAmb = %q", name, v)
		}
	}
	checkSeccomp(t, iso, self, init)
	checkKernel(t, e, id, iso)
	checkFilesystem(t, e, id, sp)
	checkIsolationFromHost(t, e, id)
}

// checkSeccomp: runc applies no-new-privileges and the default seccomp
// profile (filter mode 2) to every process. gVisor reports the filter on
// the init process (runsc --oci-seccomp installs the spec's profile in the
// sandbox) but not on processes started by exec, and prints no NoNewPrivs
// line; those processes still only reach the host through gVisor's kernel,
// which runs under its own seccomp filter.
func checkSeccomp(t *testing.T, iso Isolation, self, init map[string]string) {
	t.Helper()
	if init["Seccomp"] != "2" {
		t.Errorf("init: Seccomp = %q, want 2 (filter)", init["Seccomp"])
	}
	if iso == Container {
		for name, st := range map[string]map[string]string{"exec'd process": self, "init": init} {
			if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
				t.Errorf("%s: NoNewPrivs %q Seccomp %q, want 1 and 2", name, st["NoNewPrivs"], st["Seccomp"])
			}
		}
		return
	}
	if v, ok := self["NoNewPrivs"]; ok && v != "1" {
		t.Errorf("sandbox: NoNewPrivs = %q", v)
	}
}

// checkKernel: under runc the container shares the host's kernel; under
// gVisor it sees gVisor's.
func checkKernel(t *testing.T, e *env, id string, iso Isolation) {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	host := unix.ByteSliceToString(u.Release[:])
	inside := e.sh(t, id, "uname -r")
	if iso == Container && inside != host {
		t.Errorf("runc container reports kernel %q, host %q", inside, host)
	}
	if iso == Sandbox {
		if inside == host {
			t.Errorf("sandbox reports the host's kernel %q", inside)
		}
		if d := e.sh(t, id, "dmesg"); !strings.Contains(d, "gVisor") {
			t.Errorf("sandbox dmesg does not name gVisor: %q", d)
		}
	}
	if h := e.sh(t, id, "cat /proc/sys/kernel/hostname"); h != id {
		t.Errorf("hostname %q, want %q", h, id)
	}
}

// checkFilesystem: read-only root, writable but noexec /tmp, the volume
// writable and owned by the agent on the host.
func checkFilesystem(t *testing.T, e *env, id string, sp Spec) {
	t.Helper()
	out := e.sh(t, id, `touch /rootfile 2>/dev/null && echo root-writable
touch /bin/x 2>/dev/null && echo bin-writable
echo ok > /tmp/f && cat /tmp/f
cp /bin/busybox /tmp/bb && /tmp/bb true 2>/dev/null; echo tmp-exec=$?
echo kept > /data/f && echo data-ok
wc -c < /proc/kcore 2>/dev/null || echo no-kcore`)
	lines := strings.Split(out, "\n")
	want := []string{"ok", "tmp-exec=126", "data-ok"}
	if len(lines) != 4 || lines[0] != want[0] || lines[1] != want[1] || lines[2] != want[2] {
		t.Errorf("filesystem checks printed %q, want %q then kcore", lines, want)
	}
	// /proc/kcore is masked (bind-mounted /dev/null) under runc and absent
	// under gVisor.
	if k := lines[len(lines)-1]; k != "0" && k != "no-kcore" {
		t.Errorf("/proc/kcore readable: %q", k)
	}
	fi, err := os.Stat(filepath.Join(sp.StateDir, "data", "f"))
	if err != nil {
		t.Fatalf("the volume's file is not on the host: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("volume file owned by %d:%d", st.Uid, st.Gid)
	}
}

// checkIsolationFromHost: loopback only, its own pid namespace, and the
// spec joins no host namespace.
func checkIsolationFromHost(t *testing.T, e *env, id string) {
	t.Helper()
	ifaces := e.sh(t, id, `sed -n 's/^ *\([^:]*\):.*/\1/p' /proc/net/dev`)
	if ifaces != "lo" {
		t.Errorf("network interfaces %q, want lo only", ifaces)
	}
	if cmd := e.sh(t, id, "tr '\\0' ' ' < /proc/1/cmdline"); cmd != "/bin/sleep 3600" {
		t.Errorf("pid 1 is %q, want the agent's command", cmd)
	}
	ctr, err := e.rt.c.LoadContainer(e.rt.ctx(context.Background()), id)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ctr.Spec(e.rt.ctx(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("joins host namespace %s at %s", ns.Type, ns.Path)
		}
	}
	if len(spec.Linux.Namespaces) != 6 {
		t.Errorf("namespaces %+v, want pid, ipc, uts, mount, network, cgroup", spec.Linux.Namespaces)
	}
}

// testForkBomb: a fork bomb never gets past the pids limit, and the
// container is stopped within a bounded time. Under runc the agent lives
// on at the limit; under gVisor the host limit also counts gVisor's own
// threads, and its kernel exits when it cannot make one: the sandbox ends,
// the host is untouched.
func testForkBomb(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "bomb-" + string(iso)
	sp := e.spec(id, iso)
	sp.Pids = 32
	e.run(t, sp)
	limit := uint64(sp.Pids)
	if iso == Sandbox {
		limit += sandboxPidsOverhead
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.rt.Exec(ctx, id, ExecSpec{Args: []string{"/bin/sh", "-c", "b() { b | b & }; b; sleep 10"}, Timeout: 3 * time.Second})
	}()
	peak := uint64(0)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		m, err := e.rt.Metrics(ctx, id)
		if err != nil {
			t.Fatalf("metrics during the bomb: %v", err)
		}
		if m.PidsLimit != limit || m.Pids > limit {
			t.Fatalf("pids %d, limit %d: want at most %d", m.Pids, m.PidsLimit, limit)
		}
		peak = max(peak, m.Pids)
	}
	refused := pidsRefusals(e.rt.ns, id)
	t.Logf("%s: peak pids %d of %d, forks refused by the limit: %d", iso, peak, limit, refused)
	// Sampling may miss the peak (under load a sample every 50 ms saw 70
	// of 96 while the cgroup had refused a fork): the cgroup's count of
	// refusals is the proof that the bomb reached the limit, a sampled
	// peak near it is enough too.
	if refused == 0 && peak < limit*3/4 {
		t.Errorf("the bomb never reached the limit (peak %d of %d, %d refusals): did it run?", peak, limit, refused)
	}
	start := time.Now()
	if err := e.rt.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping the bombed container took %v", d)
	}
	wg.Wait()
}

// testOOM: a process that allocates past the memory limit is killed by
// the kernel, and the runtime reports it, before and after Stop.
func testOOM(t *testing.T, s *suite, iso Isolation) {
	e := s.newEnv(t)
	ctx := context.Background()
	id := "hog-" + string(iso)
	sp := e.spec(id, iso, "/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
	sp.MemoryBytes = 32 << 20
	e.run(t, sp)
	st := e.waitState(t, id, Stopped, 20*time.Second)
	if !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("memory hog: %+v, want OOM-killed, exit 137", st)
	}
	m, err := e.rt.Metrics(ctx, id)
	if err != nil || m.OOMKills == 0 || m.MemoryLimit != 32<<20 {
		t.Errorf("metrics %+v, %v: want an OOM kill, limit 32 MiB", m, err)
	}
	if err := e.rt.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	// Stop deleted the task (and its cgroup); the container remembers.
	if st, err := e.rt.Status(ctx, id); err != nil || st.State != Stopped || !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("after stop: %+v, %v", st, err)
	}
}

// pidsRefusals reads the "max" count of the container's pids.events: how
// many forks the limit refused (cgroup v1 or v2 layout, -1 when unreadable).
func pidsRefusals(ns, id string) int {
	for _, p := range []string{"/sys/fs/cgroup/pids/" + ns + "/" + id, "/sys/fs/cgroup/" + ns + "/" + id} {
		b, err := os.ReadFile(p + "/pids.events")
		if err != nil {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(string(b), "max %d", &n); err == nil {
			return n
		}
	}
	return -1
}

package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
)

// The benchmarks time the Runtime against the ctr CLI on the same daemon,
// image and namespace, alternating the two in each iteration, and report
// both and their ratio (runtime/ctr: below 1 the Runtime is faster):
//
//	go test -run '^$' -bench . -benchtime 10x ./appliance/agents/runtime/
//
// Start is measured until the task is running: Create+Start return once
// containerd's Start has returned, as `ctr run -d` does. ctr is given the
// same kind of spec where it has a flag (read-only root, seccomp), the same
// runc root, and a log file.

func BenchmarkStartContainer(b *testing.B) { benchStart(b, Container) }

func BenchmarkStartSandbox(b *testing.B) {
	if _, err := os.Stat(DefaultRunsc); err != nil {
		b.Skip("runsc is not installed")
	}
	benchStart(b, Sandbox)
}

func benchStart(b *testing.B, iso Isolation) {
	s := newSuite(b)
	e := s.newEnv(b)
	ctr := ctrtest.Require(b, "ctr")
	ctx := context.Background()
	ours := func(id string) {
		if err := e.rt.Create(ctx, e.spec(id, iso)); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	theirs := func(id string) {
		args := e.ctrArgs("run", "-d", "--read-only", "--seccomp", "--log-uri", "file://"+filepath.Join(e.dir, id+".log"))
		if iso == Sandbox {
			args = append(args, "--runc-binary", e.rt.SandboxBinary(), "--runc-root", e.rt.runscRoot())
		} else {
			args = append(args, "--runc-root", filepath.Join(s.d.RuntimeRoot, "runc"))
		}
		if out, err := exec.Command(ctr, append(args, e.image.Name, id, "/bin/sleep", "3600")...).CombinedOutput(); err != nil {
			b.Fatalf("ctr run: %v: %s", err, out)
		}
	}
	var tOurs, tTheirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, cid := fmt.Sprintf("rt-%d", i), fmt.Sprintf("ctr-%d", i)
		// Alternate who goes first: the one that follows runs while the
		// other's processes settle.
		if i%2 == 0 {
			tOurs += timed(func() { ours(id) })
			tTheirs += timed(func() { theirs(cid) })
		} else {
			tTheirs += timed(func() { theirs(cid) })
			tOurs += timed(func() { ours(id) })
		}
		b.StopTimer()
		for _, c := range []string{id, cid} {
			if err := e.rt.Delete(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []string{id, cid} {
			waitFor(b, 10*time.Second, func() bool { return len(processesOf(e, c)) == 0 })
		}
		b.StartTimer()
	}
	report(b, tOurs, tTheirs)
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// BenchmarkExec times a command's round trip (`true`, output collected)
// on a running container against `ctr task exec`.
func BenchmarkExec(b *testing.B) {
	s := newSuite(b)
	e := s.newEnv(b)
	ctr := ctrtest.Require(b, "ctr")
	e.run(b, e.spec("exec-bench", Container))
	ctx := context.Background()
	var ours, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ours += timed(func() {
			res, err := e.rt.Exec(ctx, "exec-bench", ExecSpec{Args: []string{"/bin/true"}})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("exec: %+v, %v", res, err)
			}
		})
		theirs += timed(func() {
			args := e.ctrArgs("task", "exec", "--exec-id", fmt.Sprintf("ctr-%d", i), "exec-bench", "/bin/true")
			if out, err := exec.Command(ctr, args...).CombinedOutput(); err != nil {
				b.Fatalf("ctr task exec: %v: %s", err, out)
			}
		})
	}
	report(b, ours, theirs)
}

func (e *env) ctrArgs(args ...string) []string {
	return append([]string{"--address", e.d.Address, "--namespace", e.rt.ns}, args...)
}

func report(b *testing.B, ours, theirs time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(ours)/1e6/n, "runtime-ms/op")
	b.ReportMetric(float64(theirs)/1e6/n, "ctr-ms/op")
	b.ReportMetric(float64(ours)/float64(theirs), "ratio")
}

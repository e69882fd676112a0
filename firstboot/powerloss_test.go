package firstboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/firstboot/report"
)

// The power-loss tests run first boot in a child process (this test binary
// re-executed) and have it SIGKILL itself at a named point. The hook exists
// only in Options; nothing in the production path reads these variables.
const (
	envChildRoot = "OMERTA_FIRSTBOOT_TEST_CHILD_ROOT"
	envCrashAt   = "OMERTA_FIRSTBOOT_CRASH_AT" // "<step>:<before|mid|after>"
	// envReal selects the real probe (on a captured /proc and /sys) and
	// the real hardening package instead of the engine-test doubles.
	envReal = "OMERTA_FIRSTBOOT_TEST_REAL"
	// envAudit makes the child run the deferred audit instead.
	envAudit = "OMERTA_FIRSTBOOT_TEST_AUDIT"
)

// realProbeRoot is a /proc and /sys captured from a real machine, so that
// the probe's verdict is the same in every run.
const realProbeRoot = "../appliance/probe/testdata/firecracker-epyc"

func childComponents(opts *Options, root string) {
	if os.Getenv(envReal) == "" {
		opts.Hardener = &fileHardener{}
		opts.Prober = &fakeProber{}
		return
	}
	abs, err := filepath.Abs(realProbeRoot)
	if err != nil {
		panic(err)
	}
	opts.ProbeRoot = abs
	opts.Hardener = ApplianceHardener{}
	opts.Prober = ApplianceProber{Options: probe.Options{Containerd: filepath.Join(root, "no-containerd.sock")}}
}

// TestHelperFirstbootChild is the child's entry point; it does nothing in a
// normal test run.
func TestHelperFirstbootChild(t *testing.T) {
	root := os.Getenv(envChildRoot)
	if root == "" {
		t.Skip("helper for the power-loss tests; runs only as their child process")
	}
	opts := testOptions(root, os.Stdout)
	childComponents(&opts, root)
	if at := os.Getenv(envCrashAt); at != "" {
		opts.Hook = func(step, point string) {
			if step+":"+point == at {
				os.Stdout.Sync()
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute) // the signal is on its way
			}
		}
	}
	var err error
	if os.Getenv(envAudit) != "" {
		_, err = RunAudit(context.Background(), AuditOptions{Options: opts})
	} else {
		_, err = Run(context.Background(), opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// runChild runs first boot on root in a child process; killed reports
// whether it died of SIGKILL.
func runChild(t *testing.T, root, crashAt string) (out string, killed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFirstbootChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChildRoot+"="+root, envCrashAt+"="+crashAt, envReal+"="+childReal, envAudit+"="+childAudit)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return stdout.String(), true
		}
	}
	if err != nil {
		t.Fatalf("child (crash at %q): %v\nstdout:\n%s\nstderr:\n%s", crashAt, err, stdout.String(), stderr.String())
	}
	return stdout.String(), false
}

func crashPoints() []string {
	var pts []string
	for _, s := range StepNames() {
		for _, p := range []string{"before", "mid", "after"} {
			pts = append(pts, s+":"+p)
		}
	}
	return pts
}

// checkTokenOrder fails when an attempt printed the setup token before
// hardening was verified, in that attempt or an earlier one.
func checkTokenOrder(t *testing.T, out, token string) {
	t.Helper()
	at := strings.Index(out, token)
	if at < 0 {
		return
	}
	if v := strings.Index(out, "harden-verify: done"); v >= 0 && v < at {
		return
	}
	for _, s := range []string{StepToken, StepReport, StepDone} {
		if strings.Contains(out, "(resuming at "+s+")") {
			return
		}
	}
	t.Errorf("setup token printed before hardening was verified:\n%s", out)
}

// childReal and childAudit are passed to the children as envReal and
// envAudit.
var childReal, childAudit string

func TestPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes first boot about 60 times")
	}
	t.Run("engine", func(t *testing.T) { childReal = ""; testPowerLoss(t) })
	// The same with the real probe and hardening: their writes must be
	// as idempotent as the engine's.
	t.Run("appliance", func(t *testing.T) { childReal = "1"; testPowerLoss(t) })
}

func testPowerLoss(t *testing.T) {
	site := map[string]string{"/etc/omerta/omerta.yaml": goodSite}
	ref := newTestRoot(t, site)
	if _, killed := runChild(t, ref, ""); killed {
		t.Fatal("reference run was killed")
	}
	want := snapshot(t, ref)
	wantSteps := stepStatuses(stepTable(t, ref))
	if len(want) < 20 {
		t.Fatalf("reference tree has only %d entries: %v", len(want), sortedKeys(want))
	}
	reportAt := slices.Index(StepNames(), StepReport)
	tokenAt := slices.Index(StepNames(), StepToken)

	for i, point := range crashPoints() {
		t.Run(point, func(t *testing.T) {
			root := newTestRoot(t, site)
			out1, killed := runChild(t, root, point)
			if !killed {
				t.Fatalf("child was not killed at %s:\n%s", point, out1)
			}
			stepIdx := i / 3
			if stepIdx < tokenAt || (stepIdx == tokenAt && strings.HasSuffix(point, ":before")) {
				for _, p := range []string{TokenPath, IssuePath} {
					if _, err := os.Stat(under(root, p)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s exists after a crash at %s, before the token step", p, point)
					}
				}
			}
			out2, killed := runChild(t, root, "")
			if killed {
				t.Fatal("rerun was killed")
			}
			tok, err := readToken(under(root, TokenPath))
			if err != nil {
				t.Fatal(err)
			}
			checkTokenOrder(t, out1, tok.Token)
			checkTokenOrder(t, out2, tok.Token)
			if !strings.Contains(out2, "omerta-firstboot: attempt 2 starting (") {
				t.Errorf("rerun did not say it was attempt 2:\n%s", out2)
			}
			if d := cmp.Diff(want, snapshot(t, root)); d != "" {
				t.Errorf("state after a crash at %s differs from an uninterrupted run (-want +got):\n%s", point, d)
			}
			if got := stepStatuses(stepTable(t, root)); got != wantSteps {
				t.Errorf("step table = %s, want %s", got, wantSteps)
			}
			checkHTML(t, root)
			j, err := ReadJournal(under(root, JournalPath))
			if err != nil || j.Attempts != 2 {
				t.Fatalf("journal attempts = %d (%v); want 2", j.Attempts, err)
			}
			// The report counts the attempts up to its sealing: a crash
			// after it (in the done step) is an attempt it cannot know.
			wantAttempts := 2
			if stepIdx > reportAt {
				wantAttempts = 1
			}
			if got := readReport(t, root).Header.Attempts; got != wantAttempts {
				t.Errorf("report attempts = %d, want %d", got, wantAttempts)
			}
			crashed := j.step(StepNames()[stepIdx])
			if strings.HasSuffix(point, ":before") && crashed.Attempts != 1 || !strings.HasSuffix(point, ":before") && crashed.Attempts != 2 {
				t.Errorf("step %s ran %d times after a crash at %s", crashed.Name, crashed.Attempts, point)
			}
		})
	}

	// One machine, cut off at every point in turn.
	t.Run("every point in turn", func(t *testing.T) {
		root := newTestRoot(t, site)
		var outs []string
		for _, point := range crashPoints() {
			out, killed := runChild(t, root, point)
			if !killed {
				t.Fatalf("child was not killed at %s", point)
			}
			outs = append(outs, out)
		}
		out, killed := runChild(t, root, "")
		if killed {
			t.Fatal("final run was killed")
		}
		outs = append(outs, out)
		tok, _ := readToken(under(root, TokenPath))
		for _, o := range outs {
			checkTokenOrder(t, o, tok.Token)
		}
		if d := cmp.Diff(want, snapshot(t, root)); d != "" {
			t.Errorf("state differs from an uninterrupted run (-want +got):\n%s", d)
		}
		j, _ := ReadJournal(under(root, JournalPath))
		n := len(crashPoints()) + 1
		if j.Attempts != n {
			t.Errorf("journal attempts = %d, want %d", j.Attempts, n)
		}
		// Attempts up to and including the run that sealed the report:
		// the crashes before the done step, plus that run.
		if got, want := readReport(t, root).Header.Attempts, 3*(reportAt+1)+1; got != want {
			t.Errorf("report attempts = %d, want %d", got, want)
		}
		data, _ := json.Marshal(readReport(t, root).Header.Steps)
		if !strings.Contains(string(data), `"name":"keys","status":"done","attempts":3`) {
			t.Errorf("report steps = %s", data)
		}
	})
}

// TestPowerLossLeftovers: a write cut off between its temp file and its
// rename leaves a temp file; the next run sweeps it.
func TestPowerLossLeftovers(t *testing.T) {
	root := newTestRoot(t, nil)
	for _, d := range []string{Dir, KeysDir} {
		os.MkdirAll(under(root, d), 0o700)
		os.WriteFile(filepath.Join(under(root, d), ".journal.json"+tmpMarker+"123"), []byte("{torn"), 0o600)
	}
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	for p := range snapshot(t, root) {
		if strings.Contains(p, tmpMarker) {
			t.Errorf("leftover %s", p)
		}
	}
}

// TestAuditPowerLoss cuts the deferred audit off at each of its points,
// one machine each and one machine at every point in turn: the next boot's
// audit leaves what an uninterrupted one does, with every attempt counted.
func TestAuditPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the audit about 15 times")
	}
	childReal, childAudit = "", "1"
	defer func() { childAudit = "" }()
	site := map[string]string{"/etc/omerta/omerta.yaml": goodSite}
	booted := func(t *testing.T) string {
		root := newTestRoot(t, site)
		if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
			t.Fatal(err)
		}
		return root
	}
	ref := booted(t)
	if out, killed := runChild(t, ref, ""); killed || !strings.Contains(out, "omerta-lynis: audit sealed: hardening index 56") {
		t.Fatalf("reference audit (killed %v):\n%s", killed, out)
	}
	want, wantSteps, wantLog := snapshot(t, ref), stepStatuses(stepTable(t, ref)), auditActions(t, ref)
	check := func(t *testing.T, root string, attempts int) {
		t.Helper()
		if d := cmp.Diff(want, snapshot(t, root)); d != "" {
			t.Errorf("state differs from an uninterrupted audit (-want +got):\n%s", d)
		}
		if got := stepStatuses(stepTable(t, root)); got != wantSteps {
			t.Errorf("step table = %s, want %s", got, wantSteps)
		}
		if got := auditActions(t, root); !slices.Equal(got, wantLog) {
			t.Errorf("audit log = %q, want %q", got, wantLog)
		}
		checkHTML(t, root)
		v := verifyReport(t, root)
		if v.Audit.Status != report.AuditDone || v.Audit.Attempts != attempts {
			t.Errorf("audit = %+v, want done in %d attempts", v.Audit, attempts)
		}
	}
	for _, point := range []string{"before", "mid", "sealed", "after"} {
		t.Run(point, func(t *testing.T) {
			root := booted(t)
			if out, killed := runChild(t, root, AuditStep+":"+point); !killed {
				t.Fatalf("child was not killed at %s:\n%s", point, out)
			}
			out, killed := runChild(t, root, "")
			if killed || !strings.Contains(out, "omerta-lynis: audit sealed: ") {
				t.Fatalf("rerun (killed %v):\n%s", killed, out)
			}
			// Cut off before sealing, the attempt counts and another runs.
			attempts := 1
			if point == "before" || point == "mid" {
				attempts = 2
				if !strings.HasPrefix(out, "omerta-lynis: attempt 1 did not finish") {
					t.Errorf("rerun did not say the attempt was cut off:\n%s", out)
				}
			}
			check(t, root, attempts)
		})
	}
	t.Run("every point in turn", func(t *testing.T) {
		root := booted(t)
		for _, point := range []string{"before", "mid", "sealed", "after"} {
			if _, killed := runChild(t, root, AuditStep+":"+point); !killed {
				t.Fatalf("child was not killed at %s", point)
			}
		}
		if _, killed := runChild(t, root, ""); killed {
			t.Fatal("final run was killed")
		}
		check(t, root, 3)
	})
}

package browsertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a child process of the test with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done closes
}

// startProc starts cmd in its own process group (so a ^C to the test's
// group reaches the cleanup first), stdout and stderr into logPath.
func startProc(name, logPath string, cmd *exec.Cmd) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening its log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// log is what the process wrote so far, the last 16 KiB of it.
func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const tail = 16 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// stop sends SIGTERM and waits up to grace for a clean exit, then kills
// the process group. It returns the exit error of a process that did not
// stop cleanly in time.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.exitErr()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(grace):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
	}
}

func (p *proc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w", p.name, p.err)
	}
	return nil
}

// waitLog waits until the process's log matches ok, failing early when
// the process exits.
func (p *proc) waitLog(timeout time.Duration, ok func(string) bool) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.logPath)
		if ok(string(b)) {
			return string(b), nil
		}
		if p.exited() {
			return "", fmt.Errorf("%s exited (%v) before it was ready; its log:\n%s", p.name, p.err, p.log())
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s was not ready within %v; its log:\n%s", p.name, timeout, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

// goTool is the go command that runs this test: on PATH, else the
// toolchain's usual place.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("the go command is not on PATH nor in /usr/local/go/bin")
}

// run runs a command to completion, its output in the error when it fails.
func run(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ciMode reports whether the test runs in CI, where a missing tool is a
// failure, never a skip.
func ciMode() bool { return os.Getenv("CI") != "" }

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if ciMode() {
		t.Fatalf("CI=%s: %s; CI must run the browser test, not skip it", os.Getenv("CI"), why)
	}
	t.Skip(why)
}

// Package ctrtest starts a private containerd for tests: its own root, state,
// socket, runc root and opt directory under a short temporary directory, so
// that tests never touch the system's containerd, its images or its
// containers, and everything they leave is removed when the test ends.
//
// It is a plain package (not a _test.go file) because the tests of several
// packages (the runtime, the reconciler, the daemon) share it.
package ctrtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// Daemon is a running private containerd.
type Daemon struct {
	// Dir holds everything the daemon and its shims write; it is short
	// (under /tmp) because unix socket paths must stay under 108 bytes.
	Dir string
	// Address is the daemon's gRPC socket.
	Address string
	// RuntimeRoot is a directory for the runtimes' state: pass it to the
	// runc options' Root (the runc shim otherwise keeps its state in
	// /run/containerd/runc/<namespace>, shared with the system containerd).
	RuntimeRoot string
	// LogPath is containerd's own log (stdout and stderr).
	LogPath string

	bin     string
	cfgPath string
	timeout time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// Option changes how Start runs the daemon.
type Option func(*Daemon)

// StartTimeout bounds how long Start and Restart wait for the daemon to
// answer (default 20 s).
func StartTimeout(d time.Duration) Option {
	return func(dm *Daemon) { dm.timeout = d }
}

// Start runs a private containerd for the test and stops it, its shims and
// everything they mounted at t.Cleanup. Without root or without containerd
// the test is skipped, except under CI=true, where CI runs as root with the
// packages installed and a skip would hide a broken harness: there it fails.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	bin := Require(t, "containerd")
	if os.Geteuid() != 0 {
		skipOrFail(t, "a private containerd needs root (its snapshotter mounts, runc creates namespaces)")
	}
	dir, err := os.MkdirTemp("/tmp", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		Dir:         dir,
		Address:     filepath.Join(dir, "c.sock"),
		RuntimeRoot: filepath.Join(dir, "rt"),
		LogPath:     filepath.Join(dir, "containerd.log"),
		bin:         bin,
		cfgPath:     filepath.Join(dir, "config.toml"),
		timeout:     20 * time.Second,
	}
	for _, o := range opts {
		o(d)
	}
	t.Cleanup(func() { d.stop(t) })
	if err := os.WriteFile(d.cfgPath, []byte(d.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.launch(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Require returns the path of the program name, skipping the test when it
// is missing (failing under CI=true).
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("%s is not installed (scripts/install-deps.sh test installs it)", name))
	}
	return p
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s; CI must run this test, not skip it", why)
	}
	t.Skip(why)
}

// config is a version 2 configuration, which containerd 1.6 (bookworm) and
// 1.7 (trixie) both read. CRI is off: tests use the containerd API only.
// The runc root cannot be set here: runtime options in the configuration
// are CRI's, so clients pass Root (under RuntimeRoot) with each container.
func (d *Daemon) config() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"), d.Address, d.Address+".ttrpc",
		filepath.Join(d.Dir, "opt"))
}

// launch starts containerd and waits until it answers a version request.
func (d *Daemon) launch() error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening containerd's log: %w", err)
	}
	cmd := exec.Command(d.bin, "--config", d.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a signal to the test's group (^C)
	// does not reach it before the cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", d.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done, d.logf = cmd, done, logf
	d.mu.Unlock()
	return d.waitReady(done)
}

func (d *Daemon) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	for {
		if err := d.ping(ctx); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited during start; its log:\n%s", d.Log())
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer on %s within %v; its log:\n%s", d.Address, d.timeout, d.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *Daemon) ping(ctx context.Context) error {
	conn, err := net.Dial("unix", d.Address)
	if err != nil {
		return err
	}
	conn.Close()
	c, err := client.New(d.Address, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	if err == nil && !ok {
		err = errors.New("not serving")
	}
	return err
}

// Log returns what containerd has written to its log so far (at most the
// last 64 KiB), for failure messages.
func (d *Daemon) Log() string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const tail = 64 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// Restart kills containerd with SIGKILL, as a crash would, and starts it
// again on the same directories. The shims, and the containers they
// supervise, keep running meanwhile.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	d.kill()
	if err := d.launch(); err != nil {
		t.Fatal(err)
	}
}

func (d *Daemon) kill() {
	d.mu.Lock()
	cmd, done, logf := d.cmd, d.done, d.logf
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
	logf.Close()
}

// Client returns a new client of the daemon, closed at t.Cleanup.
func (d *Daemon) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(d.Address, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("connecting to %s: %v", d.Address, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stop removes what tests left in the daemon, stops it gracefully (then by
// force), kills the shims and sandboxes it started, unmounts what they left
// mounted under Dir and removes Dir.
func (d *Daemon) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.running() {
		if err := d.sweep(ctx); err != nil {
			t.Logf("ctrtest: removing leftovers: %v", err)
		}
	}
	d.terminate()
	for _, p := range Processes(d.Dir) {
		syscall.Kill(p.PID, syscall.SIGKILL)
		if sock := shimSocket(p.Cmdline); sock != "" {
			defer os.Remove(sock) // a killed shim leaves its socket
		}
	}
	waitGone(d.Dir, 5*time.Second)
	if err := unmountUnder(d.Dir); err != nil {
		t.Errorf("ctrtest: %v", err)
		return // never remove a tree that may still hold a mount
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("ctrtest: removing %s: %v", d.Dir, err)
	}
}

func (d *Daemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd != nil
}

func (d *Daemon) terminate() {
	d.mu.Lock()
	cmd, done, logf := d.cmd, d.done, d.logf
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	logf.Close()
}

// shimSocket is where a runc v2 shim with these arguments listens:
// /run/containerd/s/ and the SHA-256 of address/namespace/id, outside the
// daemon's directory (containerd 1.6 and 1.7 alike).
func shimSocket(args []string) string {
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
		return ""
	}
	var ns, id, addr string
	for i := 1; i+1 < len(args); i++ {
		switch args[i] {
		case "-namespace":
			ns = args[i+1]
		case "-id":
			id = args[i+1]
		case "-address":
			addr = args[i+1]
		}
	}
	if ns == "" || id == "" || addr == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(addr, ns, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

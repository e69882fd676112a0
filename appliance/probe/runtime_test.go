package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startContainerd runs a private containerd with its own root, state and
// socket under a temporary directory and returns its socket.
func startContainerd(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starting a private containerd needs root (its snapshotters mount); CI runs this as root")
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatal("containerd is not installed: apt-get install -y containerd (CI's .ci/run does)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	// version = 2 is read by containerd 1.6 (bookworm) and 1.7 (trixie) alike.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not open %s within 15s; its log:\n%s", sock, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestContainerdRuntime(t *testing.T) {
	sock := startContainerd(t)
	var p problems
	rt := probeRuntime(context.Background(), sock, 5*time.Second, &p)
	c := rt.Containerd
	if !c.Reachable || c.Error != "" || len(p) != 0 {
		t.Fatalf("containerd = %+v, problems %v", c, p)
	}
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
	if !strings.Contains(string(out), c.Version) || c.Version == "" {
		t.Errorf("version %q is not in `containerd --version`: %s", c.Version, out)
	}
	if c.Snapshotter != "overlayfs" || !c.SnapshotterReady || !slices.Contains(c.Snapshotters, "native") {
		t.Errorf("snapshotters = %+v", c)
	}
}

func TestContainerdAbsent(t *testing.T) {
	dir := t.TempDir()
	var p problems
	rt := probeRuntime(context.Background(), filepath.Join(dir, "none.sock"), time.Second, &p)
	if rt.Containerd.Reachable || !strings.HasPrefix(rt.Containerd.Error, "no socket at ") {
		t.Errorf("absent socket: %+v", rt.Containerd)
	}
	// A socket nobody answers on: a dead daemon's leftover.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	start := time.Now()
	rt = probeRuntime(context.Background(), stale, 300*time.Millisecond, &p)
	if rt.Containerd.Reachable || rt.Containerd.Error == "" {
		t.Errorf("stale socket: %+v", rt.Containerd)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stale socket took %v, the timeout is 300ms", d)
	}
}

package ctrtest

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/plugins"
)

// TestDaemon: a test that leaves a running container behind still gets
// everything removed: the container's shim, its mounts, the directory.
func TestDaemon(t *testing.T) {
	var d *Daemon
	var shimPID int
	var shimSock string
	t.Run("leaves a container running", func(t *testing.T) {
		d = Start(t)
		a := BusyboxArchive(t, ImageOptions{})
		c := d.Client(t)
		ctx := namespaces.WithNamespace(context.Background(), "leftover")
		task := runSleep(t, ctx, c, d, a)
		for _, p := range Processes(d.Address) {
			shimPID, shimSock = p.PID, shimSocket(p.Cmdline)
		}
		if shimPID == 0 {
			t.Fatal("no shim runs for the container")
		}
		if fi, err := os.Stat(shimSock); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("the shim's socket is not at %s: %v", shimSock, err)
		}
		// containerd killed as by a crash: the shim and the task live on,
		// and a restarted daemon finds them.
		d.Restart(t)
		st, err := task.Status(ctx)
		if err != nil || st.Status != client.Running {
			t.Fatalf("after Restart: %+v, %v", st, err)
		}
		if !slices.ContainsFunc(Processes(d.Address), func(p Proc) bool { return p.PID == shimPID }) {
			t.Error("the shim did not survive the restart")
		}
	})
	if d == nil {
		return
	}
	if _, err := os.Stat(d.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there: %v", d.Dir, err)
	}
	if _, err := os.Stat(shimSock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the shim's socket %s is left: %v", shimSock, err)
	}
	if p := Processes(d.Dir); len(p) != 0 {
		t.Errorf("processes left: %v", p)
	}
	if m, err := mountsUnder(d.Dir); err != nil || len(m) != 0 {
		t.Errorf("mounts left: %v, %v", m, err)
	}
}

func runSleep(t *testing.T, ctx context.Context, c *client.Client, d *Daemon, a Archive) client.Task {
	t.Helper()
	f, err := os.Open(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := c.Import(ctx, f)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("import: %v, %v", imgs, err)
	}
	img := client.NewImage(c, imgs[0])
	if err := img.Unpack(ctx, "overlayfs"); err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, "sleeper",
		client.WithNewSnapshot("sleeper", img),
		client.WithRuntime(plugins.RuntimeRuncV2, &options.Options{Root: filepath.Join(d.RuntimeRoot, "runc")}),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("/bin/sleep", "600")))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return task
}

func TestBusyboxArchive(t *testing.T) {
	for _, tc := range []struct {
		format Format
		want   []string
	}{
		{OCI, []string{"oci-layout", "index.json"}},
		{Docker, []string{"manifest.json"}},
	} {
		a := BusyboxArchive(t, ImageOptions{Format: tc.format})
		names := tarNames(t, a.Path)
		for _, w := range tc.want {
			if !slices.Contains(names, w) {
				t.Errorf("format %d: %s missing from %v", tc.format, w, names)
			}
		}
		if len(a.Manifest) != 71 || len(a.Config) != 71 {
			t.Errorf("digests %q %q", a.Manifest, a.Config)
		}
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`/plain`:      "/plain",
		`/x\134y`:     `/x\y`,
		`/end\04`:     `/end\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProcesses(t *testing.T) {
	// The test binary's own process is never listed, even though its
	// command line holds the word it searches for.
	if p := Processes(os.Args[0]); slices.ContainsFunc(p, func(p Proc) bool { return p.PID == os.Getpid() }) {
		t.Errorf("listed itself: %v", p)
	}
	start := time.Now()
	waitGone("no-such-process-"+time.Now().String(), time.Second)
	if time.Since(start) > 500*time.Millisecond {
		t.Error("waitGone waited for nothing")
	}
}

// TestShimSocket pins the socket path a runc v2 shim computes, so that a
// shim killed at cleanup does not leave its socket in /run/containerd/s.
func TestShimSocket(t *testing.T) {
	args := []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "ns", "-id", "c1", "-address", "/tmp/d/c.sock"}
	// printf %s /tmp/d/c.sock/ns/c1 | sha256sum
	want := "/run/containerd/s/" + "ba9d78260ccc5be730f7055f83f2d83d93be21776accfeb5f5c1a47f4a84aeab"
	if got := shimSocket(args); got != want {
		t.Errorf("shimSocket = %s, want %s", got, want)
	}
	if shimSocket([]string{"/bin/sleep", "-id", "x"}) != "" {
		t.Error("a socket for a process that is no shim")
	}
}

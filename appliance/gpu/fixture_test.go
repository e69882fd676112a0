package gpu

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Character device numbers of a real NVIDIA host: 195 is the driver's,
// nvidia-uvm and nvidia-caps get dynamic majors (these are typical).
const (
	majorNvidia = 195
	majorUVM    = 510
	majorCaps   = 509
)

// driverRoot builds what nvcdi looks for under a driver root: the device
// nodes (real character devices: nvcdi's locator skips anything else, so
// plain files would give devices without nodes), the versioned libraries
// and the GSP firmware (plain files: nvcdi only finds and mounts them), and
// the binaries (executable). /var/run is a symlink to /run, as on Debian.
// capMinors are the nvidia-caps minors to create for MIG devices.
func driverRoot(t testing.TB, gpus int, version string, capMinors ...int) string {
	t.Helper()
	root := t.TempDir()
	node := func(p string, major, minor uint32) {
		mkparent(t, filepath.Join(root, p))
		err := unix.Mknod(filepath.Join(root, p), unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor)))
		if errors.Is(err, unix.EPERM) {
			t.Skipf("creating device nodes needs CAP_MKNOD (run as root, as CI does): %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range gpus {
		node(fmt.Sprintf("dev/nvidia%d", i), majorNvidia, uint32(i))
	}
	node("dev/nvidiactl", majorNvidia, 255)
	node("dev/nvidia-modeset", majorNvidia, 254)
	node("dev/nvidia-uvm", majorUVM, 0)
	node("dev/nvidia-uvm-tools", majorUVM, 1)
	for _, m := range capMinors {
		node(fmt.Sprintf("dev/nvidia-caps/nvidia-cap%d", m), majorCaps, uint32(m))
	}
	for _, lib := range []string{"libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so"} {
		write(t, filepath.Join(root, "usr/lib/x86_64-linux-gnu", lib+"."+version), "not an ELF file", 0o644)
	}
	// Debian's packages ship the soname links that programs load.
	for _, lib := range []string{"libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so"} {
		dir := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
		if err := os.Symlink(lib+"."+version, filepath.Join(dir, lib+".1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("libcuda.so.1", filepath.Join(root, "usr/lib/x86_64-linux-gnu/libcuda.so")); err != nil {
		t.Fatal(err) // the development link points at the soname, not the file: not mounted
	}
	for _, fw := range []string{"gsp_ga10x.bin", "gsp_tu10x.bin"} {
		write(t, filepath.Join(root, "lib/firmware/nvidia", version, fw), "firmware", 0o644)
	}
	for _, bin := range []string{"nvidia-smi", "nvidia-persistenced"} {
		write(t, filepath.Join(root, "usr/bin", bin), "#!/bin/false\n", 0o755)
	}
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	mkparent(t, filepath.Join(root, "var/run"))
	if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	// nvcdi searches PATH (under the root) for the binaries.
	t.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	return root
}

func mkparent(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, p, data string, mode os.FileMode) {
	t.Helper()
	mkparent(t, p)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// golden compares got with testdata/name, with the fixture's root written
// as $ROOT, or rewrites the file under -update.
func golden(t *testing.T, name, root string, got []byte) {
	t.Helper()
	got = []byte(strings.ReplaceAll(string(got), root, "$ROOT"))
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the generated spec (run with -update to accept):\n%s", p, lineDiff(string(want), string(got)))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var x, y string
		if i < len(w) {
			x = w[i]
		}
		if i < len(g) {
			y = g[i]
		}
		if x != y {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, x, y)
		}
	}
	return b.String()
}

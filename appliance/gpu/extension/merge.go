package extension

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// readManifest reads Dir/Name.json, which must describe Name.
func readManifest(root rootfs.Root) (Manifest, error) {
	p := path.Join(Dir, Name+".json")
	data, err := root.ReadFile(p, maxManifest)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading the manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", p, err)
	}
	if m.Name != Name {
		return Manifest{}, fmt.Errorf("%s: %w", p, &FieldError{File: "manifest", Field: "name", Reason: fmt.Sprintf("%q, not %q", m.Name, Name)})
	}
	return m, nil
}

// checkKernel refuses modules built for a kernel other than the running one.
func checkKernel(root rootfs.Root, m Manifest) error {
	b, err := root.ReadFile(osRelease, 4096)
	if err != nil {
		return fmt.Errorf("reading the running kernel's release: %w", err)
	}
	if running := strings.TrimSpace(string(b)); running != m.Kernel {
		return fmt.Errorf("%w: the extension's modules are built for %q, running %q", ErrKernel, m.Kernel, running)
	}
	return nil
}

// checkImage checks that Dir/m.File is a regular file of m.Size bytes
// whose SHA-256 is m.SHA256. The type is looked at before the file is
// opened (a FIFO would block) and again on what was opened.
func checkImage(root rootfs.Root, m Manifest) error {
	p := path.Join(Dir, m.File)
	fi, err := root.Stat(p)
	if err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	if err := sameShape(p, fi, m); err != nil {
		return err
	}
	hp, err := root.Join(p)
	if err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	// Join resolved every link inside the root: the last component is
	// not followed again.
	f, err := os.OpenFile(hp, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	if err := sameShape(p, fi, m); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, m.Size+1))
	if err != nil {
		return fmt.Errorf("hashing %s: %w", p, err)
	}
	if n != m.Size {
		return fmt.Errorf("%w: %s: read %d bytes, the manifest says %d", ErrImage, p, n, m.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != m.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrImage, p, sum, m.SHA256)
	}
	return nil
}

func sameShape(p string, fi os.FileInfo, m Manifest) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %w", ErrImage, &safeio.NotRegularError{Name: p, Kind: safeio.Kind(fi.Mode())})
	}
	if fi.Size() != m.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrImage, p, fi.Size(), m.Size)
	}
	return nil
}

// link puts the image where systemd-sysext finds it, refreshes, and with
// a GPU present replays its uevents. A refresh that fails takes the link
// away again.
func link(ctx context.Context, o Options, m Manifest, gpu bool) error {
	l := path.Join(LinkDir, m.File)
	if err := o.Root.MkdirAll(LinkDir, 0o755); err != nil {
		return fmt.Errorf("linking the image: %w", err)
	}
	// rootfs.Symlink: a temporary link renamed over l.
	if _, err := o.Root.Symlink(path.Join(Dir, m.File), l); err != nil {
		return fmt.Errorf("linking the image: %w", err)
	}
	if out, err := o.Runner.Run(ctx, "systemd-sysext", "refresh"); err != nil {
		err = fmt.Errorf("%w: systemd-sysext refresh: %w: %q", ErrCommand, err, tail(out))
		if _, rerr := o.Root.Remove(l); rerr != nil {
			err = fmt.Errorf("%w; and removing %s: %w", err, l, rerr)
		}
		return err
	}
	if !gpu {
		return nil
	}
	for _, c := range withGPU {
		if out, err := o.Runner.Run(ctx, c[0], c[1:]...); err != nil {
			return fmt.Errorf("%w: merged, but %s: %w: %q", ErrCommand, strings.Join(c[:min(len(c), 2)], " "), err, tail(out))
		}
	}
	return nil
}

// withGPU runs after a merge on a machine with a GPU, which booted before
// the extension was there: its uevents are replayed, so the extension's
// udev rules and modprobe lines load the modules; nvidia-persistenced's
// user (the extension's sysusers.d) is made; and the daemon, which the
// extension wants from multi-user.target, is started, since the boot's
// transaction was built before the merge and does not have it.
var withGPU = [][]string{
	{"udevadm", "trigger", "--action=add", "--subsystem-match=pci", "--attr-match=vendor=0x10de"},
	{"systemd-sysusers"},
	{"systemctl", "start", "--no-block", "nvidia-persistenced.service"},
}

func gpuCount(n int) string {
	if n == 1 {
		return "1 NVIDIA GPU on the PCI bus"
	}
	return fmt.Sprintf("%d NVIDIA GPUs on the PCI bus", n)
}

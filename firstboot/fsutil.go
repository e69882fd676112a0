package firstboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// tmpMarker is part of every temporary file name (see atomicfile.Sweep).
const tmpMarker = atomicfile.TempMarker

// mkdirAll creates dir (and parents) with mode and syncs the parent, so that
// a directory that a later fsynced file lives in survives a power cut too.
func mkdirAll(dir string, mode fs.FileMode) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// under returns the path on this machine of p inside root: every
// directory on the way is resolved inside the root (see rootfs), so an
// image's /var/lib -> /srv/state leads to root/srv/state, never to the
// host's /srv/state. The last component is kept as it is, so that
// readlink, remove, lchown or a rename over the path act on a symlink
// itself, as they did on filepath.Join's path.
//
// It is for code that must hand a path on; opening it follows a final
// symlink the kernel's way, which can leave the root, so first boot's own
// reads go through the runner's rootfs.Root. A path that cannot be
// resolved inside the root (a symlink loop, an unreadable directory) comes
// back with a NUL byte appended, so that every system call on it fails
// (EINVAL) rather than reach what the lexical join would name.
func under(root, p string) string {
	rfs, err := rootfs.New(root)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing exists below a missing root, so no link can lead out.
		return filepath.Join(root, filepath.FromSlash(p))
	}
	if err != nil {
		return unresolvable(root, p)
	}
	return joinIn(rfs, p)
}

// joinIn is under for an opened root.
func joinIn(r rootfs.Root, p string) string {
	j, err := r.JoinNoFollow(p)
	if err != nil {
		return unresolvable(r.Dir(), p)
	}
	return j
}

// resolvedIn resolves every component of p inside r, the last included:
// for paths handed to code that opens them (SQLite, the probe's statfs).
func resolvedIn(r rootfs.Root, p string) string {
	j, err := r.Join(p)
	if err != nil {
		return unresolvable(r.Dir(), p)
	}
	return j
}

func unresolvable(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) + "\x00" }

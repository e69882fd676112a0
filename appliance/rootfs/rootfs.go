// Package rootfs reads and changes files inside a root directory the way a
// process chrooted there would see them: an image tree, a fixture in a
// test, or "/" on the running appliance.
//
// filepath.Join(root, p) is not that. An image's /var/run is an absolute
// symlink to /run, and an image's /etc/resolv.conf points into /run too;
// joined onto the root, those links lead to the build host's /run. A
// hostile tree can plant ../../../../etc/shadow just as easily. Here every
// symbolic link, absolute or relative, is resolved with the root as "/", so
// nothing outside the root is ever read, written, chmodded or chowned.
//
// Lookups are openat2(RESOLVE_IN_ROOT), the kernel's own chroot-style
// walk, which a tree changing under it cannot redirect; where openat2 is
// missing, github.com/cyphar/filepath-securejoin's pathrs-lite (what runc
// uses) walks the same way in user space, and it creates directories
// (MkdirAllHandle). Operations then act on the file descriptor they
// resolved, never on a path string again. Join and JoinNoFollow
// (securejoin.SecureJoin) are for callers that must hand a path to code
// that opens it itself (SQLite): they resolve symlinks the same way, but
// what happens to the tree after they return is up to the tree.
package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Root is a directory that paths are resolved inside. The zero value is
// not usable; call New or Host.
type Root struct{ dir string }

// New returns the root at dir. "" means "/". The root itself is trusted
// (the caller chose it): symlinks in dir are resolved once, here, so that
// the prefix every path is built on has none.
func New(dir string) (Root, error) {
	if dir == "" {
		dir = "/"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Root{}, fmt.Errorf("root %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return Root{}, fmt.Errorf("root %s: %w", dir, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return Root{}, fmt.Errorf("root %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return Root{}, fmt.Errorf("root %s: %w", dir, syscall.ENOTDIR)
	}
	return Root{dir: real}, nil
}

// Host is the running system's root, "/".
func Host() Root { return Root{dir: "/"} }

// Dir is the root's directory on this machine.
func (r Root) Dir() string { return r.dir }

// IsHost reports whether the root is the running system's "/".
func (r Root) IsHost() bool { return r.dir == "/" }

// clean turns p, a path as the root's system sees it, into a clean absolute
// one: "etc/x", "/etc/x" and "/etc/../etc/x" are the same file.
func clean(p string) string { return path.Clean("/" + filepath.ToSlash(p)) }

// Join returns the path on this machine of p inside the root, with every
// symlink resolved inside the root. Components that do not exist are kept
// as they are. Prefer the methods that act on the file: a path can be
// swapped for a symlink after Join returns.
func (r Root) Join(p string) (string, error) {
	if r.dir == "" {
		return "", errZeroRoot
	}
	if r.IsHost() {
		// The kernel resolves "/" itself; SecureJoin would only redo it.
		return clean(p), nil
	}
	out, err := securejoin.SecureJoin(r.dir, clean(p))
	if err != nil {
		return "", pathErr("resolve", p, err)
	}
	return out, nil
}

// JoinNoFollow is Join for every component but the last, which is kept as
// it is: when p itself is a symlink, the path names the link, so that
// lstat, readlink, unlink, rename or lchown on it act on the link and
// never on what it points to. Opening the path follows such a link the
// kernel's way, which can leave the root: read through ReadFile instead.
func (r Root) JoinNoFollow(p string) (string, error) {
	c := clean(p)
	if c == "/" {
		return r.Join(c)
	}
	dir, err := r.Join(path.Dir(c))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, path.Base(c)), nil
}

var errZeroRoot = errors.New("rootfs: zero Root (use rootfs.New)")

// pathErr names p as the root's system sees it (not the host path pathrs
// reports) and keeps the errno, so that errors.Is(err, fs.ErrNotExist)
// and friends work.
func pathErr(op, p string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno
	}
	return &fs.PathError{Op: op, Path: clean(p), Err: err}
}

// open returns an O_PATH handle on p, following symlinks inside the root.
//
// openat2(RESOLVE_IN_ROOT) does the whole walk in the kernel, race-free,
// in one system call; pathrs-lite does the same walk in user space where
// openat2 is missing (Linux before 5.6) or filtered. pathrs-lite would use
// openat2 itself, but then reads each handle's /proc/self/fd link back to
// name it, which triples the cost of the thousands of small reads one
// hardening check makes.
func (r Root) open(p string) (*os.File, error) {
	if r.dir == "" {
		return nil, errZeroRoot
	}
	c := clean(p)
	rootFd, err := unix.Open(r.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("open", "/", err)
	}
	defer unix.Close(rootFd)
	fd, err := openat2InRoot(rootFd, c)
	if err == nil {
		return os.NewFile(uintptr(fd), c), nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return nil, pathErr("open", p, err)
	}
	f, err := pathrs.OpenInRoot(r.dir, c)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	return f, nil
}

// sysOpenat2 is unix.Openat2; tests replace it to take the fallback.
var sysOpenat2 = unix.Openat2

// openat2InRoot resolves p with "/" meaning rootFd, refusing magic links
// (/proc/self/fd/*, /proc/*/root), which lead wherever their process is.
// EAGAIN and EXDEV mean a rename or mount raced the walk: retried a bounded
// number of times, as pathrs-lite does.
func openat2InRoot(rootFd int, p string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for tries := 0; ; tries++ {
		fd, err := sysOpenat2(rootFd, p, &how)
		if (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EXDEV)) && tries < 128 {
			continue
		}
		return fd, err
	}
}

// openParent returns an O_PATH handle on p's directory and p's last
// component, which is not resolved: operations on it (lchown, readlink,
// rename) act on a symlink itself.
func (r Root) openParent(p string) (*os.File, string, error) {
	c := clean(p)
	if c == "/" {
		return nil, "", pathErr("open", p, syscall.EINVAL)
	}
	d, err := r.open(path.Dir(c))
	if err != nil {
		return nil, "", err
	}
	return d, path.Base(c), nil
}

func fdOf(f *os.File) int { return int(f.Fd()) }

// Stat describes p, following symlinks inside the root.
func (r Root) Stat(p string) (fs.FileInfo, error) {
	f, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	return fi, nil
}

// Lstat describes p itself: a symlink is reported as a symlink.
func (r Root) Lstat(p string) (fs.FileInfo, error) {
	if clean(p) == "/" {
		return r.Stat(p)
	}
	d, base, err := r.openParent(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(fdOf(d), base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("lstat", p, err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathErr("lstat", p, err)
	}
	return fi, nil
}

// Exists reports whether p names anything, a dangling symlink included.
func (r Root) Exists(p string) bool {
	_, err := r.Lstat(p)
	return err == nil
}

// Readlink returns the target of the symlink p, as written in the link.
func (r Root) Readlink(p string) (string, error) {
	d, base, err := r.openParent(p)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return readlinkat(d, base, p)
}

func readlinkat(d *os.File, base, p string) (string, error) {
	for size := 256; size <= unix.PathMax*4; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fdOf(d), base, buf)
		if err != nil {
			return "", pathErr("readlink", p, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", pathErr("readlink", p, syscall.ENAMETOOLONG)
}

// Statfs reports the file system that p is on.
func (r Root) Statfs(p string) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	f, err := r.open(p)
	if err != nil {
		return st, err
	}
	defer f.Close()
	if err := unix.Fstatfs(fdOf(f), &st); err != nil {
		return st, pathErr("statfs", p, err)
	}
	return st, nil
}

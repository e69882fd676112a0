package rootfs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// WriteFile replaces p with data and mode the way atomicfile.WriteFile does
// (temporary file, fsync, rename, fsync of the directory), creating missing
// parent directories 0755 inside the root. A symlink at p is replaced, not
// followed. It writes nothing, and reports changed=false, when p already is
// a regular file holding exactly data with mode.
func (r Root) WriteFile(p string, data []byte, mode fs.FileMode) (changed bool, err error) {
	c := clean(p)
	if c == "/" {
		return false, pathErr("write", p, syscall.EISDIR)
	}
	d, err := r.mkdirAllHandle(path.Dir(c), 0o755)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", c, err)
	}
	defer d.Close()
	base := path.Base(c)
	if same(d, base, data, mode) {
		return false, nil
	}
	tmp, err := tempName(base)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", c, err)
	}
	if err := writeTemp(d, tmp, data, mode); err != nil {
		return false, fmt.Errorf("writing %s: %w", c, err)
	}
	if err := unix.Renameat(fdOf(d), tmp, fdOf(d), base); err != nil {
		_ = unix.Unlinkat(fdOf(d), tmp, 0)
		return false, pathErr("rename", p, err)
	}
	return true, syncDir(d, path.Dir(c))
}

// same reports whether name in d is a regular file with exactly data and
// mode; anything else (absent, a symlink, unreadable) means "write it".
func same(d *os.File, name string, data []byte, mode fs.FileMode) bool {
	// Looked at before it is opened: opening a device node can do things.
	fi, err := lstatAt(d, name)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode.Perm() || fi.Size() != int64(len(data)) {
		return false
	}
	fd, err := unix.Openat(fdOf(d), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	cur, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	return err == nil && bytes.Equal(cur, data)
}

// tempName is unique and carries atomicfile.TempMarker, so that Sweep (and
// atomicfile.Sweep) find what an interrupted write left.
func tempName(base string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "." + base + atomicfile.TempMarker + hex.EncodeToString(b[:]), nil
}

func writeTemp(d *os.File, tmp string, data []byte, mode fs.FileMode) (err error) {
	fd, err := unix.Openat(fdOf(d), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer func() {
		if err != nil {
			f.Close()
			_ = unix.Unlinkat(fdOf(d), tmp, 0)
		}
	}()
	// Created 0600 and widened before any byte is written, so that a
	// secret never sits in a wider-mode file, even briefly.
	if err := f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// syncDir makes a rename, creation or unlink in d durable.
func syncDir(d *os.File, name string) error {
	fd, err := unix.Openat(fdOf(d), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("sync", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return pathErr("sync", name, err)
	}
	return nil
}

// mkdirAllHandle creates p and its missing parents inside the root with
// mode and returns an O_PATH handle on p. Each directory it creates is made
// durable in its parent, so that a file later fsynced inside survives a
// power cut too.
func (r Root) mkdirAllHandle(p string, mode fs.FileMode) (*os.File, error) {
	c := clean(p)
	if h, err := r.open(c); err == nil {
		fi, err := h.Stat()
		if err == nil && fi.IsDir() {
			return h, nil
		}
		h.Close()
	}
	// The deepest existing ancestor: every level below it is new and its
	// parent needs a sync.
	existing := c
	for existing != "/" {
		existing = path.Dir(existing)
		if _, err := r.Stat(existing); err == nil {
			break
		}
	}
	rootDir, err := os.OpenFile(r.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("open", "/", err)
	}
	defer rootDir.Close()
	h, err := pathrs.MkdirAllHandle(rootDir, c, mode)
	if err != nil {
		return nil, pathErr("mkdir", p, err)
	}
	for dir := c; dir != existing && dir != "/"; dir = path.Dir(dir) {
		parent, err := r.open(path.Dir(dir))
		if err != nil {
			h.Close()
			return nil, err
		}
		err = syncDir(parent, path.Dir(dir))
		parent.Close()
		if err != nil {
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// MkdirAll creates the directory p and its missing parents inside the root,
// durably (see mkdirAllHandle). An existing directory is left as it is.
func (r Root) MkdirAll(p string, mode fs.FileMode) error {
	h, err := r.mkdirAllHandle(p, mode)
	if err != nil {
		return err
	}
	return h.Close()
}

// unixMode converts the permission, set-id and sticky bits of mode.
func unixMode(mode fs.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if mode&fs.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if mode&fs.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// Chmod sets the mode of p, following symlinks inside the root: the file
// changed is the one resolved inside the root, never one outside it.
func (r Root) Chmod(p string, mode fs.FileMode) error {
	h, err := r.open(p)
	if err != nil {
		return err
	}
	defer h.Close()
	m := unixMode(mode)
	// fchmodat2(AT_EMPTY_PATH) acts on the O_PATH handle itself (Linux
	// 6.6); before that, chmod through the handle's /proc/self/fd link,
	// which names the same inode and cannot be redirected.
	err = unix.Fchmodat(fdOf(h), "", m, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBADF) {
		err = unix.Chmod("/proc/self/fd/"+strconv.Itoa(fdOf(h)), m)
	}
	if err != nil {
		return pathErr("chmod", p, err)
	}
	return nil
}

// Chown gives p to uid:gid, following symlinks inside the root.
func (r Root) Chown(p string, uid, gid int) error {
	h, err := r.open(p)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := unix.Fchownat(fdOf(h), "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return pathErr("chown", p, err)
	}
	return nil
}

// Lchown gives p itself to uid:gid: a symlink at p is changed, not what it
// points to.
func (r Root) Lchown(p string, uid, gid int) error {
	d, base, err := r.openParent(p)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Fchownat(fdOf(d), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("lchown", p, err)
	}
	return nil
}

// Symlink makes p a symlink to target, replacing whatever link or file was
// there atomically (a temporary link renamed over it). It reports
// changed=false when p already is that link. The target is stored as
// given; inside the root it resolves like every other link here.
func (r Root) Symlink(target, p string) (changed bool, err error) {
	c := clean(p)
	if c == "/" {
		return false, pathErr("symlink", p, syscall.EEXIST)
	}
	d, err := r.mkdirAllHandle(path.Dir(c), 0o755)
	if err != nil {
		return false, fmt.Errorf("linking %s: %w", c, err)
	}
	defer d.Close()
	base := path.Base(c)
	if cur, err := readlinkat(d, base, c); err == nil && cur == target {
		return false, nil
	}
	tmp, err := tempName(base)
	if err != nil {
		return false, fmt.Errorf("linking %s: %w", c, err)
	}
	if err := unix.Symlinkat(target, fdOf(d), tmp); err != nil {
		return false, pathErr("symlink", p, err)
	}
	if err := unix.Renameat(fdOf(d), tmp, fdOf(d), base); err != nil {
		_ = unix.Unlinkat(fdOf(d), tmp, 0)
		return false, pathErr("rename", p, err)
	}
	return true, syncDir(d, path.Dir(c))
}

// Remove removes p (a file or a symlink, not followed; or an empty
// directory) durably. A missing p is not an error: changed is false.
func (r Root) Remove(p string) (changed bool, err error) {
	d, base, err := r.openParent(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer d.Close()
	err = unix.Unlinkat(fdOf(d), base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(fdOf(d), base, unix.AT_REMOVEDIR)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, pathErr("remove", p, err)
	}
	return true, syncDir(d, path.Dir(clean(p)))
}

// Sweep removes the temporary files that interrupted writes (WriteFile,
// Symlink, atomicfile.WriteFile) left in the directory dir.
func (r Root) Sweep(dir string) error {
	d, err := r.openDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(MaxDirEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return pathErr("readdir", dir, err)
	}
	removed := false
	for _, n := range names {
		if !strings.HasPrefix(n, ".") || !strings.Contains(n, atomicfile.TempMarker) {
			continue
		}
		if err := unix.Unlinkat(fdOf(d), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return pathErr("remove", path.Join(clean(dir), n), err)
		}
		removed = true
	}
	if removed {
		return syncDir(d, dir)
	}
	return nil
}

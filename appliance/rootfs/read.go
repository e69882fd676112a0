package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// MaxDirEntries bounds ReadDir: a directory with more entries than any
// configuration or sysfs directory has is refused rather than listed.
const MaxDirEntries = 1 << 16

// ErrTooManyEntries is returned (wrapped) by ReadDir and Glob past
// MaxDirEntries.
var ErrTooManyEntries = errors.New("too many directory entries")

// ReadFile reads the regular file p, following symlinks inside the root,
// and refuses it when it holds more than limit bytes. A FIFO, a device, a
// socket or a directory is refused without being opened for reading (a
// FIFO would block, /dev/zero would never end); the error wraps
// safeio.ErrNotRegular, and an oversized file is a *safeio.LimitError.
func (r Root) ReadFile(p string, limit int64) ([]byte, error) {
	f, err := r.openRegular(p, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	if fi.Size() > limit {
		return nil, &safeio.LimitError{Name: clean(p), Limit: limit}
	}
	return safeio.ReadAll(f, clean(p), limit)
}

// openRegular opens p with flags after checking, on its O_PATH handle,
// that it is a regular file.
func (r Root) openRegular(p string, flags int) (*os.File, error) {
	h, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	fi, err := h.Stat()
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &safeio.NotRegularError{Name: clean(p), Kind: safeio.Kind(fi.Mode())}
	}
	// O_NONBLOCK: the file may have been swapped for a FIFO since the
	// check; it must not block then either.
	f, err := reopen(h, flags|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	return f, nil
}

// reopen opens the file an O_PATH handle names, with flags. The
// handle's /proc/self/fd link names that inode whatever happened to the
// path since; pathrs.Reopen does the same with checks against a forged
// /proc, at five times the cost, which this appliance (whose /proc is the
// kernel's) does not need.
func reopen(h *os.File, flags int) (*os.File, error) {
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fdOf(h)), flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), h.Name()), nil
}

// WriteExisting writes data over the existing regular file p in place,
// without creating, renaming or truncating anything the kernel does not:
// what /proc/sys and /sys files need.
func (r Root) WriteExisting(p string, data []byte) error {
	f, err := r.openRegular(p, unix.O_WRONLY|unix.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return pathErr("write", p, err)
	}
	if err := f.Close(); err != nil {
		return pathErr("write", p, err)
	}
	return nil
}

// ReadDir lists the directory p (following symlinks inside the root),
// sorted by name, and refuses one with more than MaxDirEntries entries.
// The entries' Info is read when ReadDir runs.
func (r Root) ReadDir(p string) ([]fs.DirEntry, error) {
	d, err := r.openDir(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(MaxDirEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, pathErr("readdir", p, err)
	}
	if len(names) > MaxDirEntries {
		return nil, fmt.Errorf("listing %s: %w (more than %d)", clean(p), ErrTooManyEntries, MaxDirEntries)
	}
	slices.Sort(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		fi, err := lstatAt(d, n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while listing
		}
		if err != nil {
			return nil, pathErr("lstat", path.Join(clean(p), n), err)
		}
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	return out, nil
}

// openDir opens p for listing, following symlinks inside the root.
func (r Root) openDir(p string) (*os.File, error) {
	h, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	d, err := reopen(h, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	return d, nil
}

// lstatAt describes name in the directory d without following it.
func lstatAt(d *os.File, name string) (fs.FileInfo, error) {
	fd, err := unix.Openat(fdOf(d), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

// Glob returns the paths inside the root that match pattern (path.Match
// syntax in any component), sorted, as the root's system names them.
// Symlinks are followed inside the root; a missing directory matches
// nothing.
func (r Root) Glob(pattern string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(clean(pattern), "/"), "/")
	cur := []string{"/"}
	for _, part := range parts {
		if part == "" {
			continue
		}
		if _, err := path.Match(part, ""); err != nil {
			return nil, fmt.Errorf("glob %q: %w", pattern, err)
		}
		var next []string
		for _, dir := range cur {
			matches, err := r.globDir(dir, part)
			if err != nil {
				return nil, err
			}
			next = append(next, matches...)
		}
		if len(next) > MaxDirEntries {
			return nil, fmt.Errorf("glob %q: %w", pattern, ErrTooManyEntries)
		}
		if len(next) == 0 {
			return nil, nil
		}
		cur = next
	}
	slices.Sort(cur)
	return cur, nil
}

// globDir returns the entries of dir matching part, a single component.
func (r Root) globDir(dir, part string) ([]string, error) {
	if !hasMeta(part) {
		p := path.Join(dir, part)
		if r.Exists(p) {
			return []string{p}, nil
		}
		return nil, nil
	}
	ents, err := r.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if ok, _ := path.Match(part, e.Name()); ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

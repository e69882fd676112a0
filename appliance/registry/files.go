package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// dirFS reads the files of one registry directory.
//
// It opens through os.Root, which refuses, race-free (openat2 with
// RESOLVE_BENEATH), any path or symlink that leads outside the directory.
// appliance/rootfs is not used here on purpose: it re-roots an absolute
// symlink inside the root, which is right for an OS image tree (/var/run →
// /run means the image's /run) but would hide tampering in a registry,
// where a link out of the directory must be refused and reported.
type dirFS struct {
	dir  string
	what string // "the registry", for messages
	root *os.Root
}

func openDir(dir string) (*dirFS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening registry %s: %w", dir, err)
	}
	return &dirFS{dir: dir, what: "the registry", root: r}, nil
}

func (d *dirFS) Close() error { return d.root.Close() }

// fileError is why a file could not be read: missing (CodeMissingFile) or
// refused (CodeRefusedFile), with a one-line detail.
type fileError struct {
	Code   Code
	Detail string
	Err    error
}

func (e *fileError) Error() string { return e.Detail }
func (e *fileError) Unwrap() error { return e.Err }

// open opens rel for reading and checks, on the open descriptor, that it
// is a regular file of at most limit bytes. O_NONBLOCK: a FIFO put in the
// registry must not block the verifier.
func (d *dirFS) open(rel string, limit int64) (*os.File, int64, error) {
	if reason := checkRelPath(rel); reason != "" {
		return nil, 0, &fileError{Code: CodeRefusedFile, Detail: "path " + reason}
	}
	f, err := d.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, d.classify(rel, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, &fileError{Code: CodeRefusedFile, Detail: "stat: " + errText(err), Err: err}
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, &fileError{Code: CodeRefusedFile, Detail: "is a " + safeio.Kind(fi.Mode()) + ", not a regular file", Err: safeio.ErrNotRegular}
	}
	if fi.Size() > limit {
		f.Close()
		return nil, 0, &fileError{Code: CodeRefusedFile, Detail: fmt.Sprintf("is %d bytes, over the limit of %d", fi.Size(), limit), Err: safeio.ErrTooLarge}
	}
	return f, fi.Size(), nil
}

// classify turns an open error into a finding. os.Root's "escapes" error
// is not exported, so a failure other than "does not exist" is explained by
// looking at the path the way the kernel would resolve it.
func (d *dirFS) classify(rel string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &fileError{Code: CodeMissingFile, Detail: "does not exist", Err: err}
	}
	if target, out := d.leadsOutside(rel); out {
		return &fileError{Code: CodeRefusedFile, Detail: "is a symlink that leads outside " + d.what + " (to " + quote(target) + ")", Err: err}
	}
	if errors.Is(err, syscall.ELOOP) {
		return &fileError{Code: CodeRefusedFile, Detail: "is a symlink loop", Err: err}
	}
	return &fileError{Code: CodeRefusedFile, Detail: "cannot be opened: " + errText(err), Err: err}
}

// leadsOutside reports whether rel, resolved with every symlink followed,
// lands outside the registry, and where. It is only used to word a refusal
// that os.Root already made.
func (d *dirFS) leadsOutside(rel string) (string, bool) {
	base, err := filepath.EvalSymlinks(d.dir)
	if err != nil {
		return "", false
	}
	p := filepath.Join(base, filepath.FromSlash(rel))
	// Resolve the longest existing prefix: a dangling link out of the
	// registry is still a link out.
	for q := p; q != base && q != "/" && q != "."; q = filepath.Dir(q) {
		fi, err := os.Lstat(q)
		if err != nil {
			continue
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		t, err := os.Readlink(q)
		if err != nil {
			return "", false
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(q), t)
		}
		t = filepath.Clean(t)
		if real, err := filepath.EvalSymlinks(t); err == nil {
			t = real
		}
		if t != base && !strings.HasPrefix(t, base+string(filepath.Separator)) {
			return t, true
		}
	}
	return "", false
}

// readFile reads a small file (an index, a lock, a manifest) in full.
func (d *dirFS) readFile(rel string, limit int64) ([]byte, error) {
	f, _, err := d.open(rel, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := safeio.ReadAll(f, rel, limit)
	if err != nil {
		return nil, &fileError{Code: CodeRefusedFile, Detail: errText(err), Err: err}
	}
	return data, nil
}

// hashFile streams rel through SHA-256.
func (d *dirFS) hashFile(ctx context.Context, rel string, limit int64) (string, int64, error) {
	f, _, err := d.open(rel, limit)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyBounded(ctx, h, f, rel, limit)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyBounded copies r to w, refusing more than limit bytes (a file can
// grow after its size was checked) and checking ctx between chunks, so
// that a many-gigabyte image archive can be abandoned.
func copyBounded(ctx context.Context, w io.Writer, r io.Reader, name string, limit int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if n += int64(k); n > limit {
			return n, &fileError{Code: CodeRefusedFile, Detail: fmt.Sprintf("grew past the limit of %d bytes while being read", limit), Err: safeio.ErrTooLarge}
		}
		w.Write(buf[:k])
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, &fileError{Code: CodeRefusedFile, Detail: "reading " + quote(name) + ": " + errText(err), Err: err}
		}
	}
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// errText is an error's text made one line and quoted where it repeats
// a path from the registry.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + " " + quote(pe.Path) + ": " + pe.Err.Error()
	}
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	return strings.Trim(quote(s), `"`)
}

package firstboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// tmpMarker is part of every temporary file name (see atomicfile.Sweep).
const tmpMarker = atomicfile.TempMarker

// removeFile removes path durably; a missing file is not an error.
func removeFile(path string) (changed bool, err error) {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("removing %s: %w", path, err)
	}
	return true, atomicfile.SyncDir(filepath.Dir(path))
}

// symlinkAtomic points path at target, replacing whatever link was there.
func symlinkAtomic(target, path string) (changed bool, err error) {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+tmpMarker+"link")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("linking %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("linking %s: %w", path, err)
	}
	return true, atomicfile.SyncDir(dir)
}

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

// under joins the absolute path p under root.
func under(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

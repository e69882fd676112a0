package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Logs is the path of the agent's log file: its task's stdout and stderr,
// written by the shim (so it keeps growing while omertad or containerd is
// down). Rotated logs are the same path with .1, .2, ... appended, .1 the
// newest.
func (r *Runtime) Logs(id string) (string, error) {
	if err := validateID(id); err != nil {
		return "", err
	}
	return r.logPath(id), nil
}

func (r *Runtime) logPath(id string) string { return filepath.Join(r.logDir, id+".log") }

// Rotate rotates the agent's log when it is larger than the rotation size:
// it copies the log to .1 (shifting older ones, dropping the oldest) and
// truncates it in place. Copy then truncate, because the shim holds the
// file open (O_APPEND, so its next write lands at the new end); a line
// written between the copy and the truncation is lost. Start calls it; the
// daemon calls it periodically for running agents. It reports whether it
// rotated.
func (r *Runtime) Rotate(id string) (bool, error) {
	p, err := r.Logs(id)
	if err != nil {
		return false, err
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotating the log of %s: %w", quote(id), err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("rotating the log of %s: %w: %s is not a regular file", quote(id), ErrInvalid, p)
	}
	if fi.Size() <= r.logMax {
		return false, nil
	}
	if err := r.shiftLogs(p); err != nil {
		return false, fmt.Errorf("rotating the log of %s: %w", quote(id), err)
	}
	if err := copyTruncate(p, p+".1"); err != nil {
		return false, fmt.Errorf("rotating the log of %s: %w", quote(id), err)
	}
	return true, nil
}

// shiftLogs renames .N-1 to .N, ..., .1 to .2, dropping the oldest.
func (r *Runtime) shiftLogs(p string) error {
	for i := r.logKeep - 1; i >= 1; i-- {
		err := os.Rename(p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func copyTruncate(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return in.Truncate(0)
}

// PurgeLogs removes the agent's log and its rotated copies.
func (r *Runtime) PurgeLogs(id string) error {
	p, err := r.Logs(id)
	if err != nil {
		return err
	}
	var errs []error
	for i := 0; i <= r.logKeep; i++ {
		name := p
		if i > 0 {
			name = p + "." + strconv.Itoa(i)
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

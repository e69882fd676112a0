package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/cio"
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

// logIO is the task's standard output and error, both appended by the
// shim to the agent's log (created here if missing: the shim opens a path
// that is no FIFO with O_APPEND and without O_CREAT).
//
// The log is named twice, stderr's path spelled with a "/./" in it, so
// that the shim gives each stream a descriptor of its own. Given one path
// for both, as cio.LogFile does, the shim (copyPipes, containerd 1.6 to
// 2.x) shares one descriptor and the stdout copier closes it when stdout
// ends: at the task's exit a last line on stderr, still being copied, is
// lost (an agent's "stopping" as Stop deletes the task). Each stream's
// copier runs to its EOF before the shim deletes the task; apart, neither
// closes the other's descriptor.
func (r *Runtime) logIO(id string) cio.Creator {
	return func(string) (cio.IO, error) {
		p := r.logPath(id)
		if err := createLog(p); err != nil {
			return nil, fmt.Errorf("opening the log of %s: %w", quote(id), err)
		}
		return &logIO{cfg: cio.Config{Stdout: p, Stderr: filepath.Join(r.logDir, ".") + "/./" + id + ".log"}}, nil
	}
}

// createLog creates the log if it is missing, refusing anything at its
// path but a regular file (a FIFO there would be opened as one).
func createLog(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrInvalid, p)
	}
	return nil
}

// logIO holds nothing open in omertad: the shim owns the descriptors.
type logIO struct{ cfg cio.Config }

func (l *logIO) Config() cio.Config { return l.cfg }
func (l *logIO) Cancel()            {}
func (l *logIO) Wait()              {}
func (l *logIO) Close() error       { return nil }

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

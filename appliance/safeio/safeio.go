// Package safeio reads input that may be hostile: a file an administrator
// dropped on the ESP, a report handed to an auditor, a manifest uploaded to
// the API. Every read has a size cap, and a path that names a FIFO, a device,
// a socket or a directory is refused at once instead of blocking forever
// (a FIFO with no writer) or running out of memory (/dev/zero).
package safeio

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is returned (wrapped in a *LimitError) when input exceeds the
// caller's cap.
var ErrTooLarge = errors.New("input is larger than the limit")

// ErrNotRegular is returned (wrapped) when a path names something other than
// a regular file.
var ErrNotRegular = errors.New("not a regular file")

// NotRegularError says which path named something other than a regular
// file, and what it was ("FIFO", "character device", ...).
type NotRegularError struct {
	Name string
	Kind string
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("reading %s: %v (it is a %s)", e.Name, ErrNotRegular, e.Kind)
}

func (e *NotRegularError) Unwrap() error { return ErrNotRegular }

// LimitError says which input went over which cap.
type LimitError struct {
	Name  string // the file, or "standard input"
	Limit int64  // bytes
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: larger than the limit of %d bytes", e.Name, e.Limit)
}

func (e *LimitError) Unwrap() error { return ErrTooLarge }

// ReadFile reads the regular file at path, refusing it when it holds more
// than limit bytes. Symbolic links are followed (an image's /etc may use
// them); what they lead to must still be a regular file.
func ReadFile(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer, uninterruptibly as far as Go's signal handling goes. It has no
	// effect on regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Name: path, Kind: Kind(fi.Mode())}
	}
	if fi.Size() > limit {
		return nil, &LimitError{Name: path, Limit: limit}
	}
	return readAll(f, path, limit)
}

// ReadAll reads r to the end, refusing more than limit bytes; name labels
// the error ("standard input").
func ReadAll(r io.Reader, name string, limit int64) ([]byte, error) {
	return readAll(r, name, limit)
}

func readAll(r io.Reader, name string, limit int64) ([]byte, error) {
	// Read one byte past the limit to tell "exactly limit" from "more": a
	// file can grow between Stat and read.
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, &LimitError{Name: name, Limit: limit}
	}
	return data, nil
}

// Kind names the type of file m describes, for messages.
func Kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

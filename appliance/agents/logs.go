package agents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// nonblock keeps opening a FIFO planted where a log should be from
// blocking.
const nonblock = unix.O_NONBLOCK | unix.O_NOCTTY

// Bounds on reading logs.
const (
	// MaxLogLines bounds a tail.
	MaxLogLines = 10000
	// MaxLogBytes bounds what a tail reads from the end of the log.
	MaxLogBytes = 4 << 20
	// DefaultLogLines is the tail when none is asked for.
	DefaultLogLines = 100
	followPoll      = 250 * time.Millisecond
	followChunk     = 32 << 10
)

// logPath is the log file of the agent's current container. Logs are
// raw bytes from the agent: whoever writes them to a terminal escapes them.
func (s *Service) logPath(ctx context.Context, id string) (string, error) {
	if err := checkID("id", id); err != nil {
		return "", err
	}
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil {
		return "", err
	}
	p, err := s.rt.Logs(containerID(id, row.Gen))
	if err != nil {
		return "", fmt.Errorf("finding the log of %s: %w", quote(id), err)
	}
	return p, nil
}

func checkTail(tail int) (int, error) {
	switch {
	case tail == 0:
		return DefaultLogLines, nil
	case tail < 0 || tail > MaxLogLines:
		return 0, invalid("tail", manifest.CodeRange, "%d is outside 1 to %d", tail, MaxLogLines)
	}
	return tail, nil
}

// Logs returns the last tail lines (0: 100; at most MaxLogLines, and at
// most MaxLogBytes) of the agent's current log. An agent that has not run
// yet has an empty log.
func (s *Service) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	tail, err := checkTail(tail)
	if err != nil {
		return nil, err
	}
	p, err := s.logPath(ctx, id)
	if err != nil {
		return nil, err
	}
	out, _, err := readTail(p, tail)
	return out, err
}

// readTail reads the last n lines of the file at p, and the offset the
// tail ends at (where following goes on).
func readTail(p string, n int) ([]byte, int64, error) {
	f, err := openLog(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("reading a log: %w", err)
	}
	size := fi.Size()
	start := max(0, size-MaxLogBytes)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("reading a log: %w", err)
	}
	return tailLines(buf, n, start > 0), size, nil
}

// openLog opens a log for reading, refusing anything but a regular file.
func openLog(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|nonblock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", quote(p))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening a log: %w", err)
	}
	return f, nil
}

// tailLines returns the last n lines of b. cutStart says b starts in the
// middle of the file, so its first line may be partial and is dropped
// unless it is all there is.
func tailLines(b []byte, n int, cutStart bool) []byte {
	if n <= 0 || len(b) == 0 {
		return nil
	}
	end := len(b)
	if b[end-1] == '\n' {
		end-- // the final newline ends the last line; it does not start one
	}
	i := end
	for count := 0; i > 0; i-- {
		if b[i-1] == '\n' {
			if count++; count == n {
				break
			}
		}
	}
	if i == 0 && cutStart {
		if j := bytes.IndexByte(b, '\n'); j >= 0 && j+1 < len(b) {
			i = j + 1
		}
	}
	return bytes.Clone(b[i:])
}

// FollowLogs returns the last tail lines of the agent's current log and
// then what is appended to it, until ctx ends or the reader is closed. It
// follows a rotation (the log truncated in place) by reading from the
// start again. Nothing is buffered beyond one chunk: a slow reader slows
// the following, never omertad's memory.
func (s *Service) FollowLogs(ctx context.Context, id string, tail int) (io.ReadCloser, error) {
	tail, err := checkTail(tail)
	if err != nil {
		return nil, err
	}
	p, err := s.logPath(ctx, id)
	if err != nil {
		return nil, err
	}
	first, off, err := readTail(p, tail)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		pw.CloseWithError(follow(ctx, p, first, off, pw))
	}()
	return &followReader{PipeReader: pr, cancel: cancel}, nil
}

type followReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *followReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}

// follow writes first, then whatever the log gains past off.
func follow(ctx context.Context, p string, first []byte, off int64, w io.Writer) error {
	if len(first) > 0 {
		if _, err := w.Write(first); err != nil {
			return nil // the reader is gone
		}
	}
	buf := make([]byte, followChunk)
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		var err error
		if off, err = copyNew(p, off, buf, w); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// copyNew writes what the file holds past off and returns the new offset;
// a file shorter than off was rotated, and is read from its start.
func copyNew(p string, off int64, buf []byte, w io.Writer) (int64, error) {
	f, err := openLog(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return off, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return off, err
	}
	if fi.Size() < off {
		off = 0
	}
	for off < fi.Size() {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), fi.Size()-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if err != nil {
			break
		}
	}
	return off, nil
}

package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// The anchor is the audit chain's head (seq and hash) kept outside the
// database, in state.db.audit-head beside it. The database alone cannot
// tell a chain that lost its last commits (a WAL lost after SIGKILL, a
// restored old copy) or that was replaced by an empty file from one that
// never had them; the anchor can.
//
// It is written after each committed transaction that appended to the log,
// never before, so it never names a record that is not durable: it may lag
// the head (a crash between commit and anchor write, two processes racing
// their anchor writes), which the checks allow, but it never leads it.
//
// Cost: one small in-place write and one fdatasync per committing Write
// that audited. A temporary file renamed over the old one (atomicfile)
// costs a new inode and a directory sync, two journal commits, per append;
// instead the file holds two fixed-size slots, each with a generation number
// and a CRC, and a write replaces the older slot. A torn write can only
// damage the slot being written, and the reader then takes the other one,
// which is the previous head: a lag, which is allowed.

// AnchorSuffix is appended to the database path to name the anchor file.
const AnchorSuffix = ".audit-head"

// ErrAnchor is returned (wrapped) by Write when the transaction committed but
// the anchor file could not be updated.
var ErrAnchor = errors.New("recording the audit chain head")

const (
	anchorSlot  = 256 // bytes per slot, a text line padded with spaces
	anchorSlots = 2
	anchorSize  = anchorSlot * anchorSlots
	anchorMagic = "audit-head"
	anchorVer   = "v1"
)

type anchor struct {
	Seq  int64
	Hash string
}

// slot is one decoded anchor slot.
type slot struct {
	gen int64
	anchor
}

func (s *Store) anchorPath() string { return s.path + AnchorSuffix }

// readAnchor returns the anchor, an error wrapping fs.ErrNotExist when there
// is none (no file, or an empty one), or an error saying why the file is not
// a valid anchor.
func readAnchor(path string) (anchor, error) {
	f, err := openAnchor(path, os.O_RDONLY)
	if err != nil {
		return anchor{}, fmt.Errorf("reading audit anchor %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, anchorSize+1))
	if err != nil {
		return anchor{}, fmt.Errorf("reading audit anchor %s: %w", path, err)
	}
	if len(b) == 0 {
		return anchor{}, fmt.Errorf("audit anchor %s: empty file: %w", path, fs.ErrNotExist)
	}
	sl, _, err := parseAnchor(b)
	if err != nil {
		return anchor{}, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	return sl.anchor, nil
}

// openAnchor opens the anchor file without following a symlink or blocking
// on a FIFO, and refuses anything but a regular file.
func openAnchor(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return f, nil
}

// parseAnchor decodes a whole anchor file and returns its newest valid slot
// and that slot's index. One damaged slot is what a torn write leaves and
// is skipped; two are an error.
func parseAnchor(b []byte) (slot, int, error) {
	if len(b) != anchorSize {
		return slot{}, -1, fmt.Errorf("%d bytes, want %d", len(b), anchorSize)
	}
	best, at := slot{}, -1
	var problems []string
	for i := 0; i < anchorSlots; i++ {
		sl, err := parseSlot(b[i*anchorSlot : (i+1)*anchorSlot])
		switch {
		case errors.Is(err, errEmptySlot):
		case err != nil:
			problems = append(problems, fmt.Sprintf("slot %d: %v", i, err))
		case at < 0 || sl.gen > best.gen:
			best, at = sl, i
		}
	}
	if at < 0 {
		if len(problems) == 0 {
			return slot{}, -1, errors.New("no anchor in either slot")
		}
		return slot{}, -1, errors.New(strings.Join(problems, "; "))
	}
	return best, at, nil
}

var errEmptySlot = errors.New("empty slot")

// parseSlot reads "audit-head v1 gen=G seq=S hash=H crc=C", padded with
// spaces to 255 bytes and ended by a newline; C is the CRC-32 (IEEE) of
// the text before " crc=".
func parseSlot(b []byte) (slot, error) {
	if b[len(b)-1] != '\n' {
		return slot{}, errors.New("does not end in a newline")
	}
	line := strings.TrimRight(string(b[:len(b)-1]), " ")
	if line == "" {
		return slot{}, errEmptySlot
	}
	body, sum, ok := strings.Cut(line, " crc=")
	if !ok || len(sum) != 8 {
		return slot{}, errors.New("no crc=XXXXXXXX field at the end")
	}
	c, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || uint32(c) != crc32.ChecksumIEEE([]byte(body)) {
		return slot{}, fmt.Errorf("crc %q does not match the slot's text", sum)
	}
	f := strings.Fields(body)
	if len(f) != 5 || f[0] != anchorMagic || f[1] != anchorVer {
		return slot{}, fmt.Errorf("not an %s %s line", anchorMagic, anchorVer)
	}
	var sl slot
	if sl.gen, err = slotInt(f[2], "gen="); err != nil {
		return slot{}, err
	}
	if sl.Seq, err = slotInt(f[3], "seq="); err != nil {
		return slot{}, err
	}
	sl.Hash, ok = strings.CutPrefix(f[4], "hash=")
	if !ok || !isHash(sl.Hash) {
		return slot{}, fmt.Errorf("field hash: %q is not hash= and 64 lower-case hex digits", f[4])
	}
	return sl, nil
}

func slotInt(field, prefix string) (int64, error) {
	v, ok := strings.CutPrefix(field, prefix)
	if !ok {
		return 0, fmt.Errorf("field %q: want %sN", field, prefix)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("field %s: %q is not a positive number", strings.TrimSuffix(prefix, "="), v)
	}
	return n, nil
}

func isHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func encodeSlot(sl slot) []byte {
	body := fmt.Sprintf("%s %s gen=%d seq=%d hash=%s", anchorMagic, anchorVer, sl.gen, sl.Seq, sl.Hash)
	line := fmt.Sprintf("%s crc=%08x", body, crc32.ChecksumIEEE([]byte(body)))
	return []byte(fmt.Sprintf("%-*s\n", anchorSlot-1, line))
}

func emptySlot() []byte { return []byte(fmt.Sprintf("%*s\n", anchorSlot-1, "")) }

// advanceAnchor records head as the chain head after its commit. Within one
// Store the anchor only moves forward: appends by two goroutines may reach
// here out of order.
func (s *Store) advanceAnchor(head anchor) error {
	s.anchorMu.Lock()
	defer s.anchorMu.Unlock()
	if head.Seq <= s.anchored {
		return nil
	}
	if err := writeAnchor(s.anchorPath(), head); err != nil {
		return fmt.Errorf("%w after record %d committed, in %s: %w", ErrAnchor, head.Seq, s.anchorPath(), err)
	}
	s.anchored = head.Seq
	return nil
}

// writeAnchor replaces the older slot of the anchor file with head. flock
// serialises the read-modify-write between processes sharing the database.
func writeAnchor(path string, head anchor) error {
	f, err := openAnchor(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking: %w", err)
	}
	buf := make([]byte, anchorSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading: %w", err)
	}
	cur, at, perr := parseAnchor(buf[:n])
	if perr != nil {
		// A new, empty or unreadable file is rewritten whole; the
		// unreadable one was reported by the check that preceded this
		// append (see resumeIfDiscontinuous).
		page := append(encodeSlot(slot{gen: 1, anchor: head}), emptySlot()...)
		if _, err := f.WriteAt(page, 0); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
		if err := f.Truncate(anchorSize); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("syncing: %w", err)
		}
		return atomicfile.SyncDir(filepath.Dir(path))
	}
	next := slot{gen: cur.gen + 1, anchor: head}
	if _, err := f.WriteAt(encodeSlot(next), int64((1-at)*anchorSlot)); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	return nil
}

// anchorMissing reports whether err says that there is no anchor.
func anchorMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }

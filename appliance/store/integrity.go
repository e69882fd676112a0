package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
)

// checkBeforeOpen runs PRAGMA integrity_check on the database at path
// without changing a byte of state.db, -wal or -shm, before anything opens
// it for writing. A read-write connection to a corrupt file checkpoints the
// WAL into it and deletes -wal and -shm when it closes, destroying the
// evidence that README promises to keep.
//
// Which read-only open leaves every file as found depends on what is there
// (measured with SQLite 3.54; TestCorruptWithLiveWALLeftAsFound holds it):
//
//   - no -wal: the main file is the whole database. immutable=1 reads it
//     without locks and creates nothing; plain mode=ro would create an empty
//     -wal and a -shm. Without locks, a process that opened the file after
//     the Lstat and checkpointed during the check could show it a torn page;
//     its writes go to its new WAL and only a checkpoint (1000 pages, or its
//     close) touches the main file, so that needs two processes starting on
//     one database within the check's milliseconds.
//   - -wal and -shm: mode=ro with readonly_shm=1 maps -shm read-only (plain
//     mode=ro truncates and rebuilds it) and reads the WAL, through the live
//     writer's index when one holds it, else from the WAL itself.
//   - -wal without -shm: no connection can be open (every WAL connection
//     holds the -shm), and a read-only open would have to create -shm, so
//     the check runs on a private copy of state.db and -wal.
//
// A missing file is not checked: Open creates it.
//
// Another process may open or close the database between the Lstat and
// the check (firstboot and omertad do): the last connection's close removes
// -wal and -shm, a first connection creates them, and the check finds a
// file gone that it was about to open. A check that failed for any reason
// but corruption is run again on the files then present, a bounded number
// of times; corruption is never retried.
func checkBeforeOpen(ctx context.Context, path string) error {
	var err error
	for attempt := range checkAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("checking integrity of %s: %w (after: %w)", path, ctx.Err(), err)
			case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
			}
		}
		p, perr := presentFiles(path)
		if perr != nil {
			return perr
		}
		err = checkPresent(ctx, path, p)
		if err == nil || errors.Is(err, ErrCorrupt) {
			return err
		}
	}
	return err
}

// checkAttempts bounds how often checkBeforeOpen follows a database whose
// files change under it; each change is a whole open or close elsewhere.
const checkAttempts = 5

// presence is which of state.db, -wal and -shm exist.
type presence struct{ db, wal, shm bool }

func presentFiles(path string) (presence, error) {
	var p presence
	for _, f := range []struct {
		suffix string
		ok     *bool
	}{{"", &p.db}, {"-wal", &p.wal}, {"-shm", &p.shm}} {
		ok, err := regularOrAbsent(path + f.suffix)
		if err != nil {
			return p, fmt.Errorf("opening state database %s: %w", path, err)
		}
		*f.ok = ok
	}
	return p, nil
}

// checkPresent runs the check that leaves the files p names as found.
func checkPresent(ctx context.Context, path string, p presence) error {
	switch {
	case !p.db:
		return nil
	case !p.wal:
		return integrityCheck(ctx, path, path, url.Values{"mode": {"ro"}, "immutable": {"1"}})
	case p.shm:
		err := integrityCheck(ctx, path, path, url.Values{"mode": {"ro"}, "readonly_shm": {"1"}})
		if !isLockingProtocol(err) {
			return err
		}
		// A writer killed mid-write can leave a -shm that a read-only
		// connection cannot recover from (SQLITE_PROTOCOL, "locking
		// protocol"; seen after SIGKILLs under load): the copy rebuilds
		// the WAL index privately, as for a -wal without -shm.
		return checkCopy(ctx, path)
	default:
		return checkCopy(ctx, path)
	}
}

// isLockingProtocol reports whether err is SQLite's SQLITE_PROTOCOL.
func isLockingProtocol(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrProtocol
}

// regularOrAbsent reports whether name exists, refusing anything but a
// regular file: SQLite would follow a symlink out of the state directory,
// and a FIFO blocks the open.
func regularOrAbsent(name string) (bool, error) {
	fi, err := os.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	return true, nil
}

// checkCopy checks a copy of state.db and -wal in a private directory.
func checkCopy(ctx context.Context, path string) (err error) {
	dir, err := os.MkdirTemp("", "omerta-state-check-")
	if err != nil {
		return fmt.Errorf("checking integrity of %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	cp := filepath.Join(dir, filepath.Base(path))
	for _, suffix := range []string{"", "-wal"} {
		if err := copyFile(path+suffix, cp+suffix); err != nil {
			return fmt.Errorf("checking integrity of %s: copying it aside: %w", path, err)
		}
	}
	return integrityCheck(ctx, path, cp, url.Values{"mode": {"ro"}})
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// integrityCheck opens file with q on a single throw-away connection and
// runs PRAGMA integrity_check; errors name path, the database as the caller
// knows it, even when file is a copy.
func integrityCheck(ctx context.Context, path, file string, q url.Values) error {
	db, err := sql.Open("sqlite3", dsn(file, q))
	if err != nil {
		return fmt.Errorf("checking integrity of %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("checking integrity of %s: %w", path, classify(err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("checking integrity of %s: %w", path, classify(err))
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking integrity of %s: %w", path, classify(err))
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
		}
		return fmt.Errorf("checking integrity of %s: %w: %q", path, ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

package api

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
	"syscall"

	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/firstboot/report"
)

// reportCache keeps the last verification of the first-boot report, and
// the answer of GET /report made from it. Verifying is a strict parse,
// the schema, the hash chain and the signature, milliseconds for a report
// of tens of kilobytes, and the dashboard asks on every load; the report
// changes once in the appliance's life, if ever.
//
// An entry is used while both files keep their identity: device, inode,
// size, modification and change times, taken before the files are read
// (any write changes the change time, which no one can set back). When
// the identity changed, the files are read again and an entry whose
// contents hash the same is kept under the new identity (a file touched
// or copied over with the same bytes verifies the same).
type reportCache struct {
	mu    sync.Mutex
	ids   [2]fileID
	entry *reportEntry // nil until the first verification
}

// reportEntry is one verification; it is never changed once made.
type reportEntry struct {
	sum  [sha256.Size]byte
	data []byte
	v    *report.Verification
	// answer is GET /report's body, encoded at its first use.
	once   sync.Once
	answer []byte
	err    error
}

// fileID is what says a file has not changed; err is why it could not be
// read (a missing key file is an identity too).
type fileID struct {
	dev, ino           uint64
	size, mtime, ctime int64
	err                string
}

func statID(root rootfs.Root, p string) fileID {
	fi, err := root.Stat(p)
	if err != nil {
		return fileID{err: err.Error()}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return fileID{err: "not a regular file"}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// contentSum is the hash of both files' contents, told apart.
func contentSum(data, key []byte, keyErr error) [sha256.Size]byte {
	h := sha256.New()
	a, b := sha256.Sum256(data), sha256.Sum256(key)
	h.Write(a[:])
	h.Write(b[:])
	if keyErr != nil {
		h.Write([]byte(keyErr.Error()))
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

// lookup returns the entry for files of identity ids, or nil.
func (c *reportCache) lookup(ids [2]fileID) *reportEntry {
	if c.entry == nil || ids != c.ids || ids[0].err != "" {
		return nil
	}
	return c.entry
}

// json is the entry's GET /report answer.
func (e *reportEntry) json() ([]byte, error) {
	e.once.Do(func() { e.answer, e.err = json.Marshal(reportView(e.data, e.v)) })
	return e.answer, e.err
}

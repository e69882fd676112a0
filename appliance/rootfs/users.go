package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Account files are read inside the root, never through NSS: os/user would
// answer for the machine this runs on, not for the image or fixture being
// prepared, and on the appliance itself /etc/passwd (written by
// systemd-sysusers) is the only source.
const (
	PasswdPath = "/etc/passwd"
	GroupPath  = "/etc/group"
	// accountsLimit is far above any appliance's account files (a few KiB)
	// and keeps a hostile one from exhausting memory.
	accountsLimit = 4 << 20
)

// ErrNotFound is returned (wrapped) when a user or group is not in the
// root's account files, or the file itself is missing.
var ErrNotFound = errors.New("not found")

// User is an entry of the root's /etc/passwd.
type User struct {
	Name string
	UID  int
	GID  int
	Home string
}

// LookupUser finds name in the root's /etc/passwd.
func (r Root) LookupUser(name string) (User, error) {
	f, err := r.accountEntry(PasswdPath, name, 7)
	if err != nil {
		return User{}, err
	}
	uid, err := parseID(PasswdPath, name, "uid", f[2])
	if err != nil {
		return User{}, err
	}
	gid, err := parseID(PasswdPath, name, "gid", f[3])
	if err != nil {
		return User{}, err
	}
	return User{Name: name, UID: uid, GID: gid, Home: f[5]}, nil
}

// LookupGroup returns the gid of name in the root's /etc/group.
func (r Root) LookupGroup(name string) (int, error) {
	f, err := r.accountEntry(GroupPath, name, 4)
	if err != nil {
		return 0, err
	}
	return parseID(GroupPath, name, "gid", f[2])
}

// accountEntry returns the colon-separated fields of name's line in file,
// which must have at least n fields.
func (r Root) accountEntry(file, name string, n int) ([]string, error) {
	if name == "" || strings.ContainsAny(name, ":\n") {
		return nil, fmt.Errorf("looking up %q in %s: not a valid account name", name, file)
	}
	data, err := r.ReadFile(file, accountsLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("looking up %s: %s does not exist: %w", name, file, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Split(line, ":")
		if f[0] != name {
			continue
		}
		if len(f) < n {
			return nil, fmt.Errorf("%s: the entry for %s has %d fields, want %d", file, name, len(f), n)
		}
		return f, nil
	}
	return nil, fmt.Errorf("looking up %s in %s: %w", name, file, ErrNotFound)
}

func parseID(file, name, field, s string) (int, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 1<<32-1 {
		return 0, fmt.Errorf("%s: %s of %s is %q, not a number below 4294967295", file, field, name, s)
	}
	return int(id), nil
}

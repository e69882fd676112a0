package hardening

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/omertaos/omertaos/appliance/config"
)

// groupID resolves a group name through the root's /etc/group, so that an
// image tree is judged by its own accounts, not the build host's.
func (e *env) groupID(name string) (int, bool) {
	if name == "root" {
		return 0, true
	}
	id, err := e.fs.LookupGroup(name)
	return id, err == nil
}

// permControl keeps p owned by root, in one of groups, and no more
// permissive than max. A file the root does not have is notapplicable:
// creating an empty /etc/shadow would be worse than none.
func permControl(id, p string, max os.FileMode, groups []string, profiles []config.Profile, r ...Reference) Control {
	pc := permSpec{path: p, max: max, groups: groups}
	return Control{
		ID:         id,
		Title:      fmt.Sprintf("Permissions on %s are %04o or stricter, owned by root", p, max),
		References: r,
		Profiles:   profiles,
		applies: func(e *env) (bool, string) {
			if _, err := e.fs.Stat(p); err != nil {
				return false, p + " does not exist under the root"
			}
			return true, ""
		},
		apply: pc.apply,
		check: pc.check,
	}
}

// permSpec is what one permission control wants of its file.
type permSpec struct {
	path   string
	max    os.FileMode
	groups []string
}

// stat follows symlinks inside the root, as the chmod and chown do.
func (pc permSpec) stat(e *env) (os.FileInfo, int, int, error) {
	fi, err := e.fs.Stat(pc.path)
	if err != nil {
		return nil, 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, 0, 0, fmt.Errorf("no ownership information for %s", pc.path)
	}
	return fi, int(st.Uid), int(st.Gid), nil
}

func (pc permSpec) groupOK(e *env, gid int) bool {
	for _, g := range pc.groups {
		if id, ok := e.groupID(g); ok && id == gid {
			return true
		}
	}
	return false
}

func (pc permSpec) apply(e *env) ([]string, error) {
	p := pc.path
	fi, uid, gid, err := pc.stat(e)
	if err != nil {
		return nil, fmt.Errorf("inspecting %s: %w", p, err)
	}
	changed := false
	if mode := fi.Mode().Perm(); mode&^pc.max != 0 {
		if err := e.fs.Chmod(p, mode&pc.max|fi.Mode()&os.ModeSticky); err != nil {
			return nil, fmt.Errorf("restricting mode of %s: %w", p, err)
		}
		changed = true
	}
	if uid != 0 || !pc.groupOK(e, gid) {
		ng := gid
		if !pc.groupOK(e, gid) {
			ng, _ = e.groupID(pc.groups[0])
		}
		if err := e.fs.Chown(p, 0, ng); err != nil {
			return nil, fmt.Errorf("giving %s to root: %w", p, err)
		}
		changed = true
	}
	if changed {
		return []string{p}, nil
	}
	return nil, nil
}

func (pc permSpec) check(e *env) outcome {
	o := outcome{expected: fmt.Sprintf("owner root, group %s, mode %04o or stricter", strings.Join(pc.groups, " or "), pc.max)}
	fi, uid, gid, err := pc.stat(e)
	if err != nil {
		o.result, o.actual = Error, err.Error()
		return o
	}
	o.actual = fmt.Sprintf("uid %d, gid %d, mode %04o", uid, gid, fi.Mode().Perm())
	o.evidence = []Evidence{{Source: "stat " + pc.path, SHA256: sum([]byte(o.actual)), Excerpt: o.actual}}
	switch {
	case uid != 0, !pc.groupOK(e, gid), fi.Mode().Perm()&^pc.max != 0:
		o.result = Fail
	default:
		o.result = Pass
	}
	return o
}

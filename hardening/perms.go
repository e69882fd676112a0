package hardening

import (
	"fmt"
	"os"
	"strconv"
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
	data, _, _ := e.read("/etc/group")
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[0] == name {
			if id, err := strconv.Atoi(f[2]); err == nil {
				return id, true
			}
		}
	}
	return 0, false
}

// permControl keeps p owned by root, in one of groups, and no more
// permissive than max. A file the root does not have is notapplicable:
// creating an empty /etc/shadow would be worse than none.
func permControl(id, p string, max os.FileMode, groups []string, profiles []config.Profile, r ...Reference) Control {
	want := fmt.Sprintf("owner root, group %s, mode %04o or stricter", strings.Join(groups, " or "), max)
	stat := func(e *env) (os.FileInfo, int, int, error) {
		fi, err := os.Stat(e.path(p))
		if err != nil {
			return nil, 0, 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil, 0, 0, fmt.Errorf("no ownership information for %s", p)
		}
		return fi, int(st.Uid), int(st.Gid), nil
	}
	groupOK := func(e *env, gid int) bool {
		for _, g := range groups {
			if id, ok := e.groupID(g); ok && id == gid {
				return true
			}
		}
		return false
	}
	return Control{
		ID:         id,
		Title:      fmt.Sprintf("Permissions on %s are %04o or stricter, owned by root", p, max),
		References: r,
		Profiles:   profiles,
		applies: func(e *env) (bool, string) {
			if _, err := os.Stat(e.path(p)); err != nil {
				return false, p + " does not exist under the root"
			}
			return true, ""
		},
		apply: func(e *env) ([]string, error) {
			fi, uid, gid, err := stat(e)
			if err != nil {
				return nil, fmt.Errorf("inspecting %s: %w", p, err)
			}
			changed := false
			if mode := fi.Mode().Perm(); mode&^max != 0 {
				if err := os.Chmod(e.path(p), mode&max|fi.Mode()&(os.ModeSticky)); err != nil {
					return nil, fmt.Errorf("restricting mode of %s: %w", p, err)
				}
				changed = true
			}
			if uid != 0 || !groupOK(e, gid) {
				ng := gid
				if !groupOK(e, gid) {
					ng, _ = e.groupID(groups[0])
				}
				if err := os.Chown(e.path(p), 0, ng); err != nil {
					return nil, fmt.Errorf("giving %s to root: %w", p, err)
				}
				changed = true
			}
			if changed {
				return []string{p}, nil
			}
			return nil, nil
		},
		check: func(e *env) outcome {
			o := outcome{expected: want}
			fi, uid, gid, err := stat(e)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			o.actual = fmt.Sprintf("uid %d, gid %d, mode %04o", uid, gid, fi.Mode().Perm())
			o.evidence = []Evidence{{Source: "stat " + p, SHA256: sum([]byte(o.actual)), Excerpt: o.actual}}
			switch {
			case uid != 0:
				o.result = Fail
			case !groupOK(e, gid):
				o.result = Fail
			case fi.Mode().Perm()&^max != 0:
				o.result = Fail
			default:
				o.result = Pass
			}
			return o
		},
	}
}

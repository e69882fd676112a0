package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// LostTask is a task containerd no longer lists while what ran it is still
// on the host. containerd 1.6 loses one when its client dies in the middle
// of creating or deleting the task: the shim stays (its name can no longer
// take a task), and when runc or runsc had created the container, its
// process and cgroup stay too.
//
// A lost task is this Runtime's only when that is proved: a shim's command
// line names this namespace, the id and this containerd's address; a
// container in this Runtime's runc or runsc root is a child of such a shim,
// or (when nothing of it runs) has such a shim or a bundle that names
// this containerd's socket for it. Nothing else is ever reported, killed or
// removed.
type LostTask struct {
	ID string
	// Shims are the pids of the shims left for the task (usually one).
	Shims []int
	// Runtime is "runc" or "runsc" when that runtime still holds the
	// container; "" when neither does.
	Runtime string
	// Pid is the container's process (runc's init, runsc's sandbox); 0
	// when none runs.
	Pid int

	procs []procShim
}

// lostOptions bound a search to some ids (Cleanup's check again).
type lostOptions struct {
	only map[string]bool
}

// findLost lists the lost tasks of the namespace: shims and containers in
// the state roots whose id containerd does not list (listed), asks no
// Runtime call is working on, and containerd confirms it does not know.
func (r *Runtime) findLost(ctx context.Context, listed map[string]bool, lo lostOptions) ([]LostTask, error) {
	if r.address == "" {
		r.warnOnce("no-address", "agents runtime: containerd's address is unknown; lost tasks are not looked for")
		return nil, nil
	}
	candidate := func(id string) bool {
		return !listed[id] && !r.isBusy(id) && (lo.only == nil || lo.only[id])
	}
	shims, truncated, err := scanShims(r.procDir, func(sa shimArgs) bool {
		return sa.Namespace == r.ns && candidate(sa.ID) && r.ours(sa.Address)
	})
	if err != nil {
		return nil, err
	}
	if truncated {
		r.warnOnce("proc-truncated", "agents runtime: more processes than the scan reads; some lost shims may be missed", "max", maxProcs)
	}
	found := map[string]*LostTask{}
	get := func(id string) *LostTask {
		if found[id] == nil {
			found[id] = &LostTask{ID: id}
		}
		return found[id]
	}
	for _, s := range shims {
		lt := get(s.ID)
		lt.Shims, lt.procs = append(lt.Shims, s.PID), append(lt.procs, s)
	}
	// A state root that cannot be read hides only its own containers:
	// what was found elsewhere is still reported, with the error.
	serr := r.findLostState(ctx, candidate, found, get)
	out, err := r.confirmLost(ctx, found)
	return out, errors.Join(serr, err)
}

// findLostState adds the containers of the runc and runsc roots that are
// candidates and provably this containerd's.
func (r *Runtime) findLostState(ctx context.Context, candidate func(string) bool, found map[string]*LostTask, get func(string) *LostTask) error {
	var errs []error
	for _, kind := range []string{kindRunc, kindRunsc} {
		if kind == kindRunsc && !r.HasSandbox() {
			continue
		}
		_, root := r.stateRoot(kind)
		ids, err := stateIDs(kind, root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !anyOf(ids, candidate) {
			continue // the usual case: no tool is run
		}
		cs, err := r.listState(ctx, kind)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range cs {
			if !candidate(c.ID) {
				continue
			}
			if !r.provenState(c, found[c.ID]) {
				r.warnOnce("unproven/"+kind+"/"+c.ID, "agents runtime: a container containerd does not list is left alone: nothing proves it is this containerd's",
					"runtime", kind, "container", c.ID, "pid", c.Pid, "bundle", c.Bundle)
				continue
			}
			lt := get(c.ID)
			lt.Runtime = kind
			if c.Pid > 0 && alive(r.procDir, c.Pid) {
				lt.Pid = c.Pid
			}
		}
	}
	return errors.Join(errs...)
}

func anyOf(ids []string, f func(string) bool) bool {
	for _, id := range ids {
		if f(id) {
			return true
		}
	}
	return false
}

// provenState tells whether container c of a state root is this
// containerd's: a running one must be the child of one of its lost shims
// (the shim is the subreaper of what it starts); one with nothing running
// must have such a shim, or a bundle naming this containerd's socket.
func (r *Runtime) provenState(c runcContainer, lt *LostTask) bool {
	if c.Pid > 0 && alive(r.procDir, c.Pid) {
		st, err := readStat(r.procDir, c.Pid)
		if err != nil || lt == nil {
			return false
		}
		for _, s := range lt.procs {
			if s.PID == st.PPid {
				return true
			}
		}
		return false
	}
	if lt != nil && len(lt.procs) > 0 {
		return true
	}
	if c.Bundle == "" || !filepath.IsAbs(c.Bundle) {
		return false
	}
	b, err := safeio.ReadFile(filepath.Join(c.Bundle, "address"), 4096)
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(b)) == "unix://"+shimSocketPath(r.socketDir, r.address, r.ns, c.ID)
}

// confirmLost keeps what containerd itself says it has no task for: the
// listing skips a task whose shim is slow to answer, a request for the
// one task does not.
func (r *Runtime) confirmLost(ctx context.Context, found map[string]*LostTask) ([]LostTask, error) {
	var out []LostTask
	var errs []error
	for id, lt := range found {
		_, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
		if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			if err != nil {
				errs = append(errs, wrap("asking containerd for the task of "+quote(id), err))
			}
			continue
		}
		sort.Ints(lt.Shims)
		out = append(out, *lt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

// ours tells whether a shim's -address is this containerd's socket: the
// same path, or the same file reached another way.
func (r *Runtime) ours(addr string) bool {
	if addr == "" || r.address == "" {
		return false
	}
	if filepath.Clean(addr) == filepath.Clean(r.address) {
		return true
	}
	if !filepath.IsAbs(addr) {
		return false
	}
	a, err1 := os.Stat(addr)
	b, err2 := os.Stat(r.address)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// shimSocketPath is where a runc v2 shim started by the containerd at
// address listens: the SHA-256 of address/namespace/id in the socket
// directory (/run/containerd/s, containerd 1.6 and 1.7 alike).
func shimSocketPath(dir, address, ns, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return filepath.Join(dir, hex.EncodeToString(sum[:]))
}

// warnOnce logs a warning the first time key is seen, so that what every
// pass finds again is not logged at every pass.
func (r *Runtime) warnOnce(key, msg string, args ...any) {
	r.mu.Lock()
	seen := r.warned[key]
	if !seen {
		if len(r.warned) >= 1024 {
			r.warned = map[string]bool{}
		}
		r.warned[key] = true
	}
	r.mu.Unlock()
	if !seen {
		r.log.Warn(msg, args...)
	}
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LostTaskEvent is the "event" attribute of the log record Cleanup writes
// for each lost task it removes.
const LostTaskEvent = "lost-task-removed"

// lostWait bounds each wait of a lost task's removal: for the shim's
// children to end after the container's deletion, for the shim to end
// after SIGKILL.
const lostWait = 5 * time.Second

// cleanupLost removes lost tasks, each found again first: what is no
// longer lost (containerd lists it, a call works on it) or no longer
// provably this containerd's is left alone.
func (r *Runtime) cleanupLost(ctx context.Context, lost []LostTask) error {
	if len(lost) == 0 {
		return nil
	}
	only := map[string]bool{}
	for _, lt := range lost {
		only[lt.ID] = true
	}
	listed, err := r.listTasks(ctx)
	if err != nil {
		return err
	}
	// What is found again is proved again: it is removed even when part
	// of the search failed.
	fresh, err := r.findLost(ctx, listed, lostOptions{only: only})
	errs := []error{err}
	for _, lt := range fresh {
		errs = append(errs, r.removeLost(ctx, lt))
	}
	return errors.Join(errs...)
}

// removeLost deletes the container from its runtime's state (which kills
// its processes and removes its cgroup), then kills the shim once nothing
// runs under it, removes the shim's socket and any cgroup left.
func (r *Runtime) removeLost(ctx context.Context, lt LostTask) error {
	log := r.log.With("namespace", r.ns, "container", lt.ID)
	log.Warn("agents runtime: containerd lost this task; removing what is left of it", "event", LostTaskEvent,
		"shims", lt.Shims, "runtime", lt.Runtime, "pid", lt.Pid)
	if lt.Runtime != "" {
		bin, root := r.stateRoot(lt.Runtime)
		if _, err := runTool(ctx, bin, "--root", root, "delete", "--force", lt.ID); err != nil {
			return fmt.Errorf("removing the lost task %s: %w", quote(lt.ID), err)
		}
		log.Info("agents runtime: deleted the lost container", "runtime", lt.Runtime)
	}
	for _, s := range lt.procs {
		if err := r.killShim(s, lt.Runtime != ""); err != nil {
			return fmt.Errorf("removing the lost task %s: %w", quote(lt.ID), err)
		}
		log.Info("agents runtime: killed the lost task's shim", "pid", s.PID)
	}
	addrs := []string{r.address}
	for _, s := range lt.procs {
		addrs = append(addrs, s.Address)
	}
	errs := []error{r.removeShimSockets(lt.ID, addrs), r.removeCgroups(lt.ID)}
	return errors.Join(errs...)
}

// killShim SIGKILLs a lost shim once it supervises nothing. The process
// handle (a pidfd) is taken before the shim is checked again through
// /proc, so the signal reaches that shim and never a process that took
// its pid meanwhile. What still runs under it after the container's
// deletion (runc's init when runc had not recorded the container yet) is
// killed first, when it is in the container's cgroup.
func (r *Runtime) killShim(s procShim, deleted bool) error {
	p, err := os.FindProcess(s.PID)
	if err != nil {
		return nil // gone
	}
	defer p.Release()
	sa, ok := parseShimCmdline(readCmdline(r.procDir, s.PID))
	st, serr := readStat(r.procDir, s.PID)
	if !ok || serr != nil || sa != s.shimArgs || st.StartTime != s.Start || st.State == 'Z' {
		return nil // it ended, and the pid may be another process's now
	}
	if err := r.killChildren(s, deleted); err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing shim %d: %w", s.PID, err)
	}
	return waitExited(r.procDir, s.PID)
}

// killChildren waits a moment for the shim's children to end when the
// container was just deleted (that kills them), then SIGKILLs those left
// that are in the container's cgroup; one outside it is not provably the
// container's, and the shim is then left running.
func (r *Runtime) killChildren(s procShim, deleted bool) error {
	wait := time.Duration(0)
	if deleted {
		wait = time.Second
	}
	kids, err := r.waitChildren(s.PID, wait)
	if err != nil || len(kids) == 0 {
		return err
	}
	cg := "/" + r.ns + "/" + s.ID
	for _, k := range kids {
		if !inCgroup(r.procDir, k, cg) {
			return fmt.Errorf("shim %d supervises process %d outside the container's cgroup %s; left running", s.PID, k, cg)
		}
	}
	for _, k := range kids {
		if err := killChild(r.procDir, s.PID, k); err != nil {
			return err
		}
		r.log.Info("agents runtime: killed a process the lost task's shim still supervised",
			"namespace", r.ns, "container", s.ID, "pid", k)
	}
	kids, err = r.waitChildren(s.PID, lostWait)
	if err == nil && len(kids) > 0 {
		err = fmt.Errorf("shim %d still supervises processes %v after SIGKILL; left running", s.PID, kids)
	}
	return err
}

// killChild SIGKILLs pid through a handle taken before its parent is
// checked again, as killShim does.
func killChild(procDir string, parent, pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	defer p.Release()
	if st, err := readStat(procDir, pid); err != nil || st.PPid != parent {
		return nil // it ended meanwhile
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing process %d: %w", pid, err)
	}
	return nil
}

// waitChildren waits up to d for pid to have no live child and returns
// those left.
func (r *Runtime) waitChildren(pid int, d time.Duration) ([]int, error) {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		kids, err := liveChildren(r.procDir, pid)
		if errors.Is(err, errProcGone) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the children of shim %d: %w", pid, err)
		}
		if len(kids) == 0 || time.Now().After(deadline) {
			return kids, nil
		}
	}
}

func waitExited(procDir string, pid int) error {
	for deadline := time.Now().Add(lostWait); !exited(procDir, pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d is still running %v after SIGKILL", pid, lostWait)
		}
	}
	return nil
}

// removeShimSockets removes the socket a killed shim leaves, for each
// address it may have been started with, when nothing listens on it.
func (r *Runtime) removeShimSockets(id string, addrs []string) error {
	var errs []error
	done := map[string]bool{}
	for _, a := range addrs {
		p := shimSocketPath(r.socketDir, a, r.ns, id)
		if a == "" || done[p] {
			continue
		}
		done[p] = true
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil || fi.Mode()&os.ModeSocket == 0 {
			errs = append(errs, fmt.Errorf("shim socket %s: not a socket (%v)", quote(p), err))
			continue
		}
		if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
			c.Close()
			continue // a shim listens there: not a leftover
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			errs = append(errs, fmt.Errorf("shim socket %s: %w", quote(p), err))
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing shim socket %s: %w", quote(p), err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the container's cgroup, /NS/ID in each hierarchy
// (containerd's default cgroups path), where it is left. rmdir removes
// only an empty cgroup: one that still holds a process is reported.
func (r *Runtime) removeCgroups(id string) error {
	mounts, err := cgroupMounts(r.mountinfo)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(m, r.ns, id)
		if err := rmdirCgroup(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", quote(dir), err))
		}
	}
	return errors.Join(errs...)
}

// cgroupBusyWait bounds how long rmdirCgroup waits on a cgroup the kernel
// still counts as populated just after its last process exited (cgroup
// v1 releases a dead task's membership asynchronously: rmdir gave EBUSY
// within milliseconds of the SIGKILLed processes' exit, in the lost-task
// test under load).
const cgroupBusyWait = 2 * time.Second

// rmdirCgroup removes an empty cgroup, retrying EBUSY for cgroupBusyWait;
// a cgroup gone already is not an error.
func rmdirCgroup(dir string) error {
	for deadline := time.Now().Add(cgroupBusyWait); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
	}
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// Orphans is what the namespace holds that the caller does not know.
type Orphans struct {
	Containers []string
	// Tasks whose container is unknown (or gone).
	Tasks []string
	// Snapshots are active snapshots (a container's root) that no
	// container uses; image layers are left to the garbage collector.
	// containerd collects such a snapshot itself unless a lease holds it,
	// so they come with an orphaned lease, or a collection not run yet.
	Snapshots []string
	// Leases not held by this Runtime: left by a process that died.
	Leases []string
	// Lost are tasks containerd no longer lists whose shim or container
	// is still on the host, whether or not the caller knows the
	// container: nothing can reach them through containerd any more.
	Lost []LostTask
}

// Empty reports whether nothing was found.
func (o Orphans) Empty() bool {
	return len(o.Containers)+len(o.Tasks)+len(o.Snapshots)+len(o.Leases)+len(o.Lost) == 0
}

// extractPrefix starts the keys of the snapshots an unpack works in.
const extractPrefix = "extract-"

// Orphans lists containers, tasks, active snapshots and leases that known
// does not claim (known is asked container ids, which are also snapshot
// keys) and that no call of this Runtime is working on now, and the lost
// tasks (see LostTask) of any container no call is working on.
func (r *Runtime) Orphans(ctx context.Context, known func(id string) bool) (Orphans, error) {
	ctx = r.ctx(ctx)
	keep := func(id string) bool { return known(id) || r.isBusy(id) }
	cs, err := r.c.ContainerService().List(ctx)
	if err != nil {
		return Orphans{}, wrap("listing containers", err)
	}
	var o Orphans
	used := map[string]bool{}
	for _, c := range cs {
		used[c.SnapshotKey] = true
		if !keep(c.ID) {
			o.Containers = append(o.Containers, c.ID)
		}
	}
	listed, err := r.listTasks(ctx)
	if err != nil {
		return Orphans{}, err
	}
	for id := range listed {
		if !keep(id) {
			o.Tasks = append(o.Tasks, id)
		}
	}
	sort.Strings(o.Tasks)
	// Looking for lost tasks reads the host (/proc, runc's state): what it
	// cannot read is logged, and the rest of the sweep goes on.
	if o.Lost, err = r.findLost(ctx, listed, lostOptions{}); err != nil {
		r.warnOnce("find-lost/"+err.Error(), "agents runtime: looking for lost tasks", "err", err)
	}
	if o.Snapshots, err = r.orphanSnapshots(ctx, func(k string) bool { return used[k] || keep(k) }); err != nil {
		return Orphans{}, err
	}
	if o.Leases, err = r.orphanLeases(ctx); err != nil {
		return Orphans{}, err
	}
	return o, nil
}

// listTasks is the set of the ids of the tasks containerd lists.
func (r *Runtime) listTasks(ctx context.Context) (map[string]bool, error) {
	resp, err := r.c.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, wrap("listing tasks", errgrpc.ToNative(err))
	}
	out := make(map[string]bool, len(resp.Tasks))
	for _, t := range resp.Tasks {
		out[taskID(t)] = true
	}
	return out, nil
}

func (r *Runtime) orphanSnapshots(ctx context.Context, keep func(string) bool) ([]string, error) {
	r.mu.Lock()
	importing := r.imports > 0
	r.mu.Unlock()
	var out []string
	err := r.c.SnapshotService(r.snapshotter).Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind != snapshots.KindActive || keep(i.Name) {
			return nil
		}
		if importing && strings.HasPrefix(i.Name, extractPrefix) {
			return nil // an import under way unpacks there
		}
		out = append(out, i.Name)
		return nil
	})
	if err != nil {
		return nil, wrap("listing snapshots", err)
	}
	sort.Strings(out)
	return out, nil
}

func (r *Runtime) orphanLeases(ctx context.Context) ([]string, error) {
	all, err := r.c.LeasesService().List(ctx)
	if err != nil {
		return nil, wrap("listing leases", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range all {
		if !r.leases[l.ID] {
			out = append(out, l.ID)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Cleanup removes what Orphans found: lost tasks first (each found again
// before anything is killed), tasks (killed), then containers with their
// snapshots, loose snapshots and leases. What is already gone is not an
// error; it goes on past failures and reports them all.
func (r *Runtime) Cleanup(ctx context.Context, o Orphans) error {
	ctx = r.ctx(ctx)
	errs := []error{r.cleanupLost(ctx, o.Lost)}
	for _, id := range o.Tasks {
		errs = append(errs, r.killOrphanTask(ctx, id))
	}
	for _, id := range o.Containers {
		if err := r.Delete(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	sn := r.c.SnapshotService(r.snapshotter)
	for _, k := range o.Snapshots {
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, wrap("removing snapshot "+quote(k), err))
		}
	}
	ls := r.c.LeasesService()
	all, err := ls.List(ctx)
	if err != nil {
		return errors.Join(append(errs, wrap("listing leases", err))...)
	}
	drop := map[string]bool{}
	for _, id := range o.Leases {
		drop[id] = true
	}
	for _, l := range all {
		if drop[l.ID] {
			if err := ls.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, wrap("removing lease "+quote(l.ID), err))
			}
		}
	}
	return errors.Join(errs...)
}

// killOrphanTask kills and deletes a task; through its container when that
// still exists, else directly (the task outlived its container's record).
func (r *Runtime) killOrphanTask(ctx context.Context, id string) error {
	ctr, err := r.c.LoadContainer(ctx, id)
	if err == nil {
		task, err := ctr.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = deleteAnyTask(ctx, r.c, task)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return wrap("removing task "+quote(id), err)
		}
		return nil
	}
	svc := r.c.TaskService()
	_, kerr := svc.Kill(ctx, &tasks.KillRequest{ContainerID: id, Signal: 9, All: true})
	var derr error
	for range 50 { // the kill takes effect a moment later
		if _, derr = svc.Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(derr)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if derr = errgrpc.ToNative(derr); derr != nil && !errdefs.IsNotFound(derr) {
		return fmt.Errorf("removing task %s: %w", quote(id), errors.Join(errgrpc.ToNative(kerr), derr))
	}
	return nil
}

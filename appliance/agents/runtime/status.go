package runtime

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/omertaos/omertaos/appliance/gpu"
)

// State is a container's state as the runtime sees it.
type State string

const (
	// Created: the container exists and has never run (or its task was
	// created but not started).
	Created State = "created"
	Running State = "running"
	Paused  State = "paused"
	// Stopped: the task has exited (its exit code is known) or was
	// deleted by Stop.
	Stopped State = "stopped"
	Unknown State = "unknown"
)

// Status is what the runtime knows of one container.
type Status struct {
	ID        string
	Image     string
	Isolation Isolation
	State     State
	Pid       uint32
	// ExitCode, ExitedAt and OOMKilled are set once the task has exited.
	ExitCode  uint32
	ExitedAt  time.Time
	OOMKilled bool
	// Labels are the caller's labels (the Runtime's own are left out).
	Labels map[string]string
	// GPUs is the grant the container was created with (agent, mode,
	// memory and devices; no label or reservation), nil for none; its
	// Problem is set when the record does not parse.
	GPUs *gpu.Grant
}

// Status reports one container's state.
func (r *Runtime) Status(ctx context.Context, id string) (Status, error) {
	if err := validateID(id); err != nil {
		return Status{}, err
	}
	ctx = r.ctx(ctx)
	c, err := r.c.ContainerService().Get(ctx, id)
	if err != nil {
		return Status{}, wrap("reading container "+quote(id), err)
	}
	resp, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	var p *task.Process
	if err = errgrpc.ToNative(err); err == nil {
		p = resp.Process
	} else if !errdefs.IsNotFound(err) {
		return Status{}, wrap("reading the task of "+quote(id), err)
	}
	st := statusOf(c, p)
	if st.State == Stopped && p != nil {
		// The cgroup stays until the task is deleted: it tells whether
		// the exit was the OOM killer's doing.
		if m, err := r.Metrics(ctx, id); err == nil {
			st.OOMKilled = m.OOMKills > 0
		}
	}
	return st, nil
}

// List reports every container of the namespace, sorted by id, in two
// requests whatever their number.
func (r *Runtime) List(ctx context.Context) ([]Status, error) {
	ctx = r.ctx(ctx)
	cs, err := r.c.ContainerService().List(ctx)
	if err != nil {
		return nil, wrap("listing containers", err)
	}
	resp, err := r.c.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, wrap("listing tasks", errgrpc.ToNative(err))
	}
	byID := map[string]*task.Process{}
	for _, p := range resp.Tasks {
		byID[taskID(p)] = p
	}
	out := make([]Status, 0, len(cs))
	for _, c := range cs {
		out = append(out, statusOf(c, byID[c.ID]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// statusOf combines a container's record with its task (nil: none). A
// container without a task is stopped if Stop recorded an exit on it,
// else created.
func statusOf(c containers.Container, p *task.Process) Status {
	st := Status{ID: c.ID, Image: c.Image, Isolation: Isolation(c.Labels[labelIsolation]), Labels: map[string]string{},
		GPUs: grantOf(c.Labels)}
	for k, v := range c.Labels {
		if !strings.HasPrefix(k, labelPrefix) {
			st.Labels[k] = v
		}
	}
	if p == nil {
		st.State = Created
		if code, ok := c.Labels[labelExitCode]; ok {
			st.State = Stopped
			n, _ := strconv.ParseUint(code, 10, 32)
			st.ExitCode = uint32(n)
			st.ExitedAt, _ = time.Parse(time.RFC3339Nano, c.Labels[labelExitedAt])
			st.OOMKilled = c.Labels[labelOOM] == "true"
		}
		return st
	}
	st.Pid = p.Pid
	switch p.Status {
	case task.Status_CREATED:
		st.State = Created
	case task.Status_RUNNING:
		st.State = Running
	case task.Status_PAUSED, task.Status_PAUSING:
		st.State = Paused
	case task.Status_STOPPED:
		st.State = Stopped
		st.ExitCode = p.ExitStatus
		if p.ExitedAt != nil {
			st.ExitedAt = p.ExitedAt.AsTime()
		}
	default:
		st.State = Unknown
	}
	return st
}

// taskID is the container a listed task belongs to: containerd fills in
// ID (the task's id, which is the container's) and leaves ContainerID
// empty in a list.
func taskID(p *task.Process) string {
	if p.ContainerID != "" {
		return p.ContainerID
	}
	return p.ID
}

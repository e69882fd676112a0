package runtime

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
)

// Metrics are one container's cgroup counters.
type Metrics struct {
	At time.Time
	// CPUNanos is the CPU time used since the task started.
	CPUNanos uint64
	// MemoryBytes is the working set: usage less inactive file cache,
	// what the OOM killer weighs.
	MemoryBytes uint64
	MemoryLimit uint64
	Pids        uint64
	PidsLimit   uint64
	// OOMKills counts the processes the kernel killed for memory.
	OOMKills uint64
}

// Metrics reads the cgroup metrics of the container's task (cgroup v1 or
// v2, whichever the host has). The cgroup lives until the task is
// deleted, so a task that has exited still reports them.
func (r *Runtime) Metrics(ctx context.Context, id string) (Metrics, error) {
	all, err := r.metrics(ctx, "id=="+id)
	if err != nil {
		return Metrics{}, fmt.Errorf("reading the metrics of %s: %w", quote(id), err)
	}
	m, ok := all[id]
	if !ok {
		return Metrics{}, fmt.Errorf("reading the metrics of %s: %w: no task", quote(id), ErrNotFound)
	}
	return m, nil
}

// MetricsAll reads the metrics of every task of the namespace in one
// request.
func (r *Runtime) MetricsAll(ctx context.Context) (map[string]Metrics, error) {
	m, err := r.metrics(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return m, nil
}

func (r *Runtime) metrics(ctx context.Context, filters ...string) (map[string]Metrics, error) {
	resp, err := r.c.TaskService().Metrics(r.ctx(ctx), &tasks.MetricsRequest{Filters: filters})
	if err != nil {
		return nil, wrap("asking containerd", errgrpc.ToNative(err))
	}
	out := make(map[string]Metrics, len(resp.Metrics))
	for _, m := range resp.Metrics {
		mm, err := decodeMetric(m)
		if err != nil {
			return nil, err
		}
		out[m.ID] = mm
	}
	return out, nil
}

func decodeMetric(m *types.Metric) (Metrics, error) {
	out := Metrics{}
	if m.Timestamp != nil {
		out.At = m.Timestamp.AsTime()
	}
	if m.Data == nil {
		return out, nil
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return out, fmt.Errorf("decoding the metrics of %s: %w", quote(m.ID), err)
	}
	switch d := data.(type) {
	case *v1.Metrics:
		fromV1(&out, d)
	case *v2.Metrics:
		fromV2(&out, d)
	default:
		return out, fmt.Errorf("metrics of %s: unknown type %T", quote(m.ID), data)
	}
	return out, nil
}

func fromV1(out *Metrics, d *v1.Metrics) {
	if d.CPU != nil && d.CPU.Usage != nil {
		out.CPUNanos = d.CPU.Usage.Total
	}
	if mem := d.Memory; mem != nil && mem.Usage != nil {
		out.MemoryBytes = sub(mem.Usage.Usage, mem.TotalInactiveFile)
		out.MemoryLimit = mem.Usage.Limit
	}
	if d.Pids != nil {
		out.Pids, out.PidsLimit = d.Pids.Current, d.Pids.Limit
	}
	if d.MemoryOomControl != nil {
		out.OOMKills = d.MemoryOomControl.OomKill
	}
}

func fromV2(out *Metrics, d *v2.Metrics) {
	if d.CPU != nil {
		out.CPUNanos = d.CPU.UsageUsec * 1000
	}
	if mem := d.Memory; mem != nil {
		out.MemoryBytes = sub(mem.Usage, mem.InactiveFile)
		out.MemoryLimit = mem.UsageLimit
	}
	if d.Pids != nil {
		out.Pids, out.PidsLimit = d.Pids.Current, d.Pids.Limit
	}
	if d.MemoryEvents != nil {
		out.OOMKills = d.MemoryEvents.OomKill
	}
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

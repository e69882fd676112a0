package runtime

import (
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestDecodeMetric covers both cgroup versions: the dev machines run v1,
// the appliance image v2, and the integration tests see only one.
func TestDecodeMetric(t *testing.T) {
	tests := []struct {
		name string
		data any
		want Metrics
	}{
		{"cgroup v1", &v1.Metrics{
			CPU:              &v1.CPUStat{Usage: &v1.CPUUsage{Total: 5_000_000}},
			Memory:           &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 10 << 20, Limit: 64 << 20}, TotalInactiveFile: 2 << 20},
			Pids:             &v1.PidsStat{Current: 7, Limit: 32},
			MemoryOomControl: &v1.MemoryOomControl{OomKill: 2},
		}, Metrics{CPUNanos: 5_000_000, MemoryBytes: 8 << 20, MemoryLimit: 64 << 20, Pids: 7, PidsLimit: 32, OOMKills: 2}},
		{"cgroup v2", &v2.Metrics{
			CPU:          &v2.CPUStat{UsageUsec: 5_000},
			Memory:       &v2.MemoryStat{Usage: 10 << 20, UsageLimit: 64 << 20, InactiveFile: 2 << 20},
			Pids:         &v2.PidsStat{Current: 7, Limit: 32},
			MemoryEvents: &v2.MemoryEvents{OomKill: 1},
		}, Metrics{CPUNanos: 5_000_000, MemoryBytes: 8 << 20, MemoryLimit: 64 << 20, Pids: 7, PidsLimit: 32, OOMKills: 1}},
		{"inactive file above usage", &v2.Metrics{Memory: &v2.MemoryStat{Usage: 1, InactiveFile: 5}}, Metrics{}},
		{"empty v1", &v1.Metrics{}, Metrics{}},
	}
	ts := timestamppb.Now()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := typeurl.MarshalAnyToProto(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeMetric(&types.Metric{ID: "a1", Timestamp: ts, Data: a})
			if err != nil {
				t.Fatal(err)
			}
			tc.want.At = ts.AsTime()
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := decodeMetric(&types.Metric{ID: "a1", Data: mustAny(t, &types.Mount{Type: "x"})}); err == nil {
		t.Error("a foreign metrics type was accepted")
	}
}

func mustAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

package probe

import (
	"context"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/omertaos/omertaos/appliance/config"
)

// BenchmarkProbeLive is the whole probe of this machine as `omerta probe`
// runs it: /proc, /sys, netlink, the real NVML (no driver here) and the
// containerd socket, then the verdict. Target: under 150 ms.
func BenchmarkProbeLive(b *testing.B) {
	ctx := context.Background()
	m := DefaultMatrix()
	for b.Loop() {
		res, err := Run(ctx, Options{})
		if err != nil {
			b.Fatal(err)
		}
		Evaluate(res, m, config.ProfilePro)
	}
}

// BenchmarkProbeLiveDGXH100 is the same probe with NVIDIA's DGX H100 mock in
// place of the library: the extra over BenchmarkProbeLive is the cost of
// eight GPUs' worth of queries and checks. Target: under 50 ms extra.
func BenchmarkProbeLiveDGXH100(b *testing.B) {
	ctx := context.Background()
	m := DefaultMatrix()
	lib := nvml.Interface(complete(dgxh100.New()))
	for b.Loop() {
		res, err := Run(ctx, Options{NVML: lib})
		if err != nil {
			b.Fatal(err)
		}
		Evaluate(res, m, config.ProfilePro)
	}
}

// BenchmarkProbeFixture probes a captured machine, without live handles.
func BenchmarkProbeFixture(b *testing.B) {
	fx := fixtures[1]
	m := DefaultMatrix()
	for b.Loop() {
		res := probeFixture(b, fx)
		Evaluate(res, m, config.ProfileEnterprise)
	}
}

// BenchmarkProbeLiveContainerd adds a running containerd (a private one) to
// BenchmarkProbeLive: a gRPC connection, the version and the plugin list.
func BenchmarkProbeLiveContainerd(b *testing.B) {
	sock := startContainerd(b)
	ctx := context.Background()
	m := DefaultMatrix()
	for b.Loop() {
		res, err := Run(ctx, Options{Containerd: sock})
		if err != nil {
			b.Fatal(err)
		}
		if !res.Runtime.Containerd.Reachable {
			b.Fatal(res.Runtime.Containerd.Error)
		}
		Evaluate(res, m, config.ProfilePro)
	}
}

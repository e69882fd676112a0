// Package probe finds out what machine the appliance runs on (CPU, memory,
// disks, kernel, firmware security, network, NVIDIA GPUs, the container
// runtime) and judges it against a compatibility matrix per profile.
//
// Everything the probe reads lives under Options.Root, and every external
// handle (NVML, netlink, the containerd socket, the clock) is an option, so
// tests run it against fixtures copied from real machines and NVIDIA's mocks.
// An absent GPU, driver or containerd is a fact to report, never an error.
//
// Which driver branch and kernel modules drive which GPU generation is
// appliance/gpu's table; every profile applies it (gpu.driver_support).
// Without NVML the probe tells "no NVIDIA driver found" from "NVIDIA
// driver installed, no NVIDIA GPU found" by what is on disk (the module
// for the running kernel, libnvidia-ml, an NVIDIA system extension) and
// what is on the PCI bus (vendor 0x10de, display class).
package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/vishvananda/netlink"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// SchemaVersion names the shape of Result; bump it when a field changes meaning.
const SchemaVersion = "omertaos.dev/probe/v1"

// DefaultContainerdAddress is where Debian's containerd listens.
const DefaultContainerdAddress = "/run/containerd/containerd.sock"

// DefaultStateDir is the directory whose filesystem must have room for
// images, models and the database: the configuration's daemon.state_dir.
var DefaultStateDir = config.Default().Daemon.StateDir

// Netlink is the part of a netlink handle the probe uses. *netlink.Handle
// satisfies it; tests pass a handle opened inside a namespace they created.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteList(link netlink.Link, family int) ([]netlink.Route, error)
}

// Options says where and with what to probe. The zero value probes the live
// machine.
type Options struct {
	// Root is "/" in production; /proc, /sys, /dev, /etc/cdi and the state
	// directory are read under it.
	Root string
	// NVML is nil for the real library (nvml.New()); tests pass go-nvml mocks.
	NVML nvml.Interface
	// Netlink is nil for a handle on the current network namespace.
	Netlink Netlink
	// Containerd is the socket address; "" means DefaultContainerdAddress.
	// "-" skips the runtime probe (fixtures of other machines have no daemon).
	Containerd string
	// ContainerdTimeout bounds the runtime probe; 0 means 500ms. A daemon
	// that does not answer that fast is reported as unreachable.
	ContainerdTimeout time.Duration
	// StateDir is the path, under Root, whose filesystem's free space is
	// measured; "" means DefaultStateDir. Missing components are walked up.
	StateDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Result is everything one probe found. It is stored as JSON, so fields are
// only ever added; a change of meaning bumps SchemaVersion.
type Result struct {
	SchemaVersion string    `json:"schema_version"`
	Time          time.Time `json:"time"`
	Host          Host      `json:"host"`
	Network       Network   `json:"network"`
	GPU           GPU       `json:"gpu"`
	Runtime       Runtime   `json:"runtime"`
	// Problems lists facts that could not be read, one line each. A problem
	// is not a verdict: the matrix decides whether the missing fact matters.
	Problems []string `json:"problems,omitempty"`
}

// Run probes the machine. It fails only when ctx ends or Root is not a
// directory; anything it cannot read becomes a line in Result.Problems.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.Containerd == "" {
		opts.Containerd = DefaultContainerdAddress
	}
	if opts.ContainerdTimeout == 0 {
		opts.ContainerdTimeout = 500 * time.Millisecond
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	root, err := rootfs.New(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("probing: %w", err)
	}

	res := &Result{SchemaVersion: SchemaVersion, Time: now().UTC()}
	r := &reader{fs: root}

	// The four parts touch different subsystems; running them side by side
	// keeps the probe within its budget when one of them waits (containerd's
	// dial, NVML's first call into the driver).
	var (
		wg                          sync.WaitGroup
		hostP, netP, gpuP, runtimeP []string
		runtimeR                    Runtime
		gpuR                        GPU
		netR                        Network
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		var p problems
		netR = probeNetwork(opts.Netlink, r, &p)
		netP = p
	}()
	go func() {
		defer wg.Done()
		var p problems
		gpuR = probeGPU(opts.NVML, r, &p)
		gpuP = p
	}()
	go func() {
		defer wg.Done()
		var p problems
		runtimeR = probeRuntime(ctx, opts.Containerd, opts.ContainerdTimeout, &p)
		runtimeP = p
	}()
	var p problems
	res.Host = probeHost(r, opts.StateDir, &p)
	hostP = p
	wg.Wait()
	res.Network, res.GPU, res.Runtime = netR, gpuR, runtimeR
	for _, ps := range [][]string{hostP, netP, gpuP, runtimeP} {
		res.Problems = append(res.Problems, ps...)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probing: %w", err)
	}
	return res, nil
}

// problems collects what could not be read.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// reader reads files under a root and reports paths as they are on the
// probed machine, not as they are in a fixture directory. Symlinks resolve
// inside the root: an image tree's /var/run -> /run must lead to the
// image's /run, not the host's.
type reader struct{ fs rootfs.Root }

// readLimit caps every file the probe reads: /proc/cpuinfo of a 256-core
// machine is about 400 KiB, the largest CDI specs a few hundred.
const readLimit = 4 << 20

func (r *reader) read(p string) ([]byte, error) { return r.fs.ReadFile(p, readLimit) }

// readOptional returns ok=false without a problem when the file is absent,
// which for most firmware and driver files is itself the fact.
func (r *reader) readOptional(p string, pr *problems) ([]byte, bool) {
	b, err := r.read(p)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			pr.addf("reading %s: %v", p, err)
		}
		return nil, false
	}
	return b, true
}

func (r *reader) exists(p string) bool {
	_, err := r.fs.Stat(p)
	return err == nil
}

package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// labelGPUs records the grant a container was created with, so that after
// a restart its agent's grant can be restored (gpu.Allocator.Restore)
// from what the container really has.
const labelGPUs = labelPrefix + "gpus"

// maxLabel is containerd's bound on a label's key and value together.
const maxLabel = 4096

// sandboxGPUReason is why a sandboxed agent gets no GPU. runsc's nvproxy
// forwards the driver's ioctls to the host for the exact driver versions
// it was built against (Debian's runsc 0.0~20240729 lists 535.104.12 to
// 550.90.07, not Debian's own 550.163.01), behind a flag the sandbox
// wrapper does not pass; a GPU through a proxy that does not know the
// driver's ABI is neither isolation nor a working GPU.
const sandboxGPUReason = "gVisor nvproxy is not enabled on this appliance"

// WithCDIRoot sets the root whose CDI spec directory (gpu.CDISpecDir, the
// /var/run/cdi that appliance/gpu writes) GPUs are injected from; the
// default is the host. /etc/cdi is never read: a device a grant names
// must be the one NVML reported.
func WithCDIRoot(root rootfs.Root) Option { return func(r *Runtime) { r.cdiRoot = root } }

// gpuRecord is labelGPUs' value: compact, since a label has 4 KiB.
type gpuRecord struct {
	Agent       string   `json:"agent"`
	Mode        gpu.Mode `json:"mode"`
	MemoryBytes uint64   `json:"memory_bytes,omitempty"`
	UUIDs       []string `json:"uuids"`
}

// checkGPUs refuses a grant the runtime cannot inject as asked.
func (s *Spec) checkGPUs() error {
	g := s.GPUs
	if g == nil {
		return nil
	}
	if s.Isolation == Sandbox {
		return fmt.Errorf("%w: gpus: sandbox isolation cannot have GPUs: %s", ErrUnsupported, sandboxGPUReason)
	}
	if len(g.Units) == 0 {
		return invalid("gpus", "the grant names no device")
	}
	for i, u := range g.Units {
		if u.UUID == "" || u.CDIName != (gpu.Unit{UUID: u.UUID}).CDIName() {
			return invalid(fmt.Sprintf("gpus.units[%d]", i), "CDI name %s does not name GPU %s", quote(u.CDIName), quote(u.UUID))
		}
	}
	if v, err := gpuLabel(g); err != nil || len(labelGPUs)+len(v) > maxLabel {
		return invalid("gpus", "a grant of %d devices is too large to record on the container", len(g.Units))
	}
	return nil
}

func gpuLabel(g *gpu.Grant) (string, error) {
	rec := gpuRecord{Agent: g.Agent, Mode: g.Mode, MemoryBytes: g.MemoryBytes}
	for _, u := range g.Units {
		rec.UUIDs = append(rec.UUIDs, u.UUID)
	}
	b, err := json.Marshal(rec)
	return string(b), err
}

// grantOf reads labelGPUs back; a label that does not parse gives a grant
// marked with the problem rather than none, so it is not taken for a
// container without GPUs.
func grantOf(labels map[string]string) *gpu.Grant {
	v, ok := labels[labelGPUs]
	if !ok {
		return nil
	}
	var rec gpuRecord
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil || len(rec.UUIDs) == 0 || slices.Contains(rec.UUIDs, "") {
		return &gpu.Grant{Problem: fmt.Sprintf("the container's GPU label %s does not parse", quote(v))}
	}
	g := &gpu.Grant{Agent: rec.Agent, Mode: rec.Mode, MemoryBytes: rec.MemoryBytes}
	for _, id := range rec.UUIDs {
		g.Units = append(g.Units, gpu.GrantedGPU{UUID: id, CDIName: (gpu.Unit{UUID: id}).CDIName()})
	}
	return g
}

// cdiDirs is where the grant's devices are resolved, or nil without one.
func (r *Runtime) cdiDirs(s Spec) ([]string, error) {
	if s.GPUs == nil {
		return nil, nil
	}
	dir, err := gpu.CDISpecDir(r.cdiRoot)
	if err != nil {
		return nil, fmt.Errorf("gpus: %w", err)
	}
	return []string{dir}, nil
}

// withGPUs applies exactly the CDI edits of the grant's devices: their
// nodes with device cgroup rules, the spec's common nodes, mounts and
// environment. It runs after the user is set (the nodes are given the
// agent's uid and gid) and before seccomp.
func withGPUs(g *gpu.Grant, dirs []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		if g == nil {
			return nil
		}
		err := gpu.InjectDevices(sp, dirs, g.CDIDevices())
		switch {
		case err == nil:
			return nil
		case errors.Is(err, gpu.ErrNotFound):
			// The spec no longer defines a granted GPU: the grant is stale.
			return fmt.Errorf("gpus: %w: %w", ErrState, err)
		case errors.Is(err, gpu.ErrDenied), errors.Is(err, gpu.ErrInvalid):
			return fmt.Errorf("gpus: %w: %w", ErrInvalid, err)
		}
		return fmt.Errorf("gpus: %w", err)
	}
}

// runscListTimeout bounds `runsc nvproxy list-supported-drivers`.
const runscListTimeout = 5 * time.Second

// maxRunscOutput bounds what is read of it: a line per driver version.
const maxRunscOutput = 64 << 10

var driverVersion = regexp.MustCompile(`^[0-9]{3,4}(\.[0-9]{1,4}){1,2}$`)

// SandboxGPUs says why a sandboxed agent cannot have GPUs with the
// installed NVIDIA driver (NVML's version, "550.163.01"). It always
// returns an error wrapping ErrUnsupported: nvproxy is not enabled. The
// reason also says whether runsc's nvproxy would support that driver, so
// that the operator, and whoever enables it, has the fact at hand; Create
// refuses a sandbox with GPUs with the short reason alone.
func (r *Runtime) SandboxGPUs(ctx context.Context, driver string) error {
	reason := sandboxGPUReason
	if driver != "" {
		reason += r.nvproxyVerdict(ctx, driver)
	}
	return fmt.Errorf("%w: sandbox isolation cannot have GPUs: %s", ErrUnsupported, reason)
}

// nvproxyVerdict says whether runsc's nvproxy would support driver.
func (r *Runtime) nvproxyVerdict(ctx context.Context, driver string) string {
	if !r.HasSandbox() {
		return " (and gVisor's runsc is not installed)"
	}
	supported, err := r.nvproxyDrivers(ctx)
	switch {
	case err != nil:
		return fmt.Sprintf(" (runsc could not say which drivers its nvproxy supports: %v)", err)
	case slices.Contains(supported, driver):
		return fmt.Sprintf(" (runsc's nvproxy lists NVIDIA driver %s as supported; enabling it is not yet tested)", quote(driver))
	case len(supported) == 0:
		return fmt.Sprintf("; runsc's nvproxy supports no NVIDIA driver, so not %s either", quote(driver))
	}
	return fmt.Sprintf("; runsc's nvproxy does not support NVIDIA driver %s either (it supports %d versions, %s to %s)",
		quote(driver), len(supported), supported[0], supported[len(supported)-1])
}

// nvproxyDrivers asks runsc which driver versions nvproxy supports, sorted
// oldest first; a line that is not a version is skipped.
func (r *Runtime) nvproxyDrivers(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, runscListTimeout)
	defer cancel()
	var out, errOut limitedBuffer
	out.max, errOut.max = maxRunscOutput, 4<<10
	cmd := exec.CommandContext(ctx, r.runsc, "nvproxy", "list-supported-drivers")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, quote(strings.TrimSpace(errOut.String())))
	}
	if out.cut {
		return nil, fmt.Errorf("its list is longer than %d bytes", maxRunscOutput)
	}
	var vs []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l = strings.TrimSpace(l); driverVersion.MatchString(l) {
			vs = append(vs, l)
		}
	}
	slices.SortFunc(vs, compareDriverVersions)
	return slices.Compact(vs), nil
}

func compareDriverVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(as), len(bs)) {
		// Equal-length digit strings compare as numbers; longer is larger.
		if c := len(as[i]) - len(bs[i]); c != 0 {
			return c
		}
		if c := strings.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

// limitedBuffer keeps the first max bytes written to it and notes the cut.
type limitedBuffer struct {
	bytes.Buffer
	max int
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.cut = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// Cgroups maps the cgroup of each container of the namespace that carries
// label to the label's value (gpu.ContainerCgroup, the path containerd's
// default spec gives it), for attributing GPU processes to agents.
func (r *Runtime) Cgroups(ctx context.Context, label string) (map[string]string, error) {
	cs, err := r.c.ContainerService().List(r.ctx(ctx))
	if err != nil {
		return nil, wrap("listing containers", err)
	}
	out := map[string]string{}
	for _, c := range cs {
		if v, ok := c.Labels[label]; ok {
			out[gpu.ContainerCgroup(r.ns, c.ID)] = v
		}
	}
	return out, nil
}

package runtime

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cfsPeriod is the CFS period (100 ms, the kernel's default); the quota is
// the share of it the agent's millicores buy.
const cfsPeriod = 100_000

// specOpts is the locked-down OCI spec, on top of containerd's default
// (which already gives new pid, ipc, uts, mount and network namespaces,
// masked and read-only /proc paths and a deny-all device cgroup).
// The default seccomp profile comes last: it is computed from the
// capabilities set before it.
// cdiDirs are where s.GPUs' devices are resolved (nil without GPUs).
func specOpts(s Spec, ic ocispec.ImageConfig, cdiDirs []string) []oci.SpecOpts {
	opts := []oci.SpecOpts{
		withProcess(s, ic),
		withUser(s.User, ic.User),
		withVolumeDirs(s),
		withHostname(s.ID),
		withNoCapabilities,
		oci.WithNoNewPrivileges,
		withPrivateNamespaces,
		withTmp(s.TmpBytes),
		withVolumes(s),
		withLimits(s),
		withGPUs(s.GPUs, cdiDirs),
		withKeptMasks,
	}
	if !s.WritableRoot {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	return append(opts, seccomp.WithDefaultProfile())
}

// withProcess takes the command, environment and working directory from
// the image, with the caller's command, args and env on top.
func withProcess(s Spec, ic ocispec.ImageConfig) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		env := ic.Env
		if len(env) == 0 {
			env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		}
		sp.Process.Env = mergeEnv(env, s.Env)
		sp.Process.Args = processArgs(s.Command, s.Args, ic.Entrypoint, ic.Cmd)
		if len(sp.Process.Args) == 0 {
			return invalid("args", "neither the spec nor the image gives a command")
		}
		sp.Process.Cwd = "/"
		if ic.WorkingDir != "" {
			sp.Process.Cwd = ic.WorkingDir
		}
		sp.Process.Terminal = false
		return nil
	}
}

// processArgs is Kubernetes' rule: a command replaces the entrypoint and
// drops the image's CMD; args replace the CMD.
func processArgs(command, args, entrypoint, cmd []string) []string {
	if len(command) > 0 {
		entrypoint, cmd = command, nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

// mergeEnv replaces variables of base by those of over with the same name
// and appends the others, keeping order.
func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	idx := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		idx[k] = i
	}
	for _, e := range over {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

// withUser sets the uid and gid: the caller's, else the image's when it is
// numeric or named in the image's /etc/passwd, and never root: an image
// that asks for root, or names no user, runs as nobody.
func withUser(u *User, imageUser string) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, sp *oci.Spec) error {
		switch {
		case u != nil:
			sp.Process.User = specs.User{UID: u.UID, GID: u.GID}
		case imageUser == "":
			sp.Process.User = specs.User{UID: NobodyID, GID: NobodyID}
		default:
			if uid, gid, ok := numericUser(imageUser); ok {
				sp.Process.User = specs.User{UID: uid, GID: gid}
			} else if err := oci.WithUser(imageUser)(ctx, c, ctr, sp); err != nil {
				return fmt.Errorf("resolving the image's user %q: %w", imageUser, err)
			}
		}
		if sp.Process.User.UID == 0 || sp.Process.User.GID == 0 {
			sp.Process.User = specs.User{UID: NobodyID, GID: NobodyID}
		}
		sp.Process.User.AdditionalGids = []uint32{sp.Process.User.GID}
		sp.Process.User.Username = ""
		return nil
	}
}

// numericUser parses "uid" or "uid:gid" (a lone uid runs with gid = uid).
func numericUser(s string) (uid, gid uint32, ok bool) {
	us, gs, hasGID := strings.Cut(s, ":")
	u, err := strconv.ParseUint(us, 10, 31)
	if err != nil {
		return 0, 0, false
	}
	if !hasGID {
		return uint32(u), uint32(u), true
	}
	g, err := strconv.ParseUint(gs, 10, 31)
	if err != nil {
		return 0, 0, false
	}
	return uint32(u), uint32(g), true
}

// withHostname uses the id, cut to the 63 bytes a host name may have.
func withHostname(id string) oci.SpecOpts {
	if len(id) > 63 {
		id = id[:63]
	}
	return oci.WithHostname(id)
}

// withNoCapabilities empties all five sets. A nil set would leave runc's
// defaults; empty ones drop everything, ambient included.
func withNoCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
	sp.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:    []string{},
		Effective:   []string{},
		Permitted:   []string{},
		Inheritable: []string{},
		Ambient:     []string{},
	}
	return nil
}

// withPrivateNamespaces gives the container a new namespace of every kind
// but user (no host namespace: no path is joined), adding cgroup so that
// the agent sees only its own cgroup.
func withPrivateNamespaces(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
	want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace,
		specs.MountNamespace, specs.NetworkNamespace, specs.CgroupNamespace}
	sp.Linux.Namespaces = sp.Linux.Namespaces[:0]
	for _, t := range want {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: t})
	}
	return nil
}

// withTmp mounts a tmpfs of the given size on /tmp, owned by the agent's
// user: runc gives a tmpfs the mode of the directory it covers (0755 in
// many images), so mode=1777 alone would leave it unwritable. noexec: with
// a read-only root the agent has no place to write a program and run it,
// so only the image's code runs.
func withTmp(size int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		u := sp.Process.User
		sp.Mounts = append(sp.Mounts, specs.Mount{
			Destination: "/tmp",
			Type:        "tmpfs",
			Source:      "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=1777", "size=" + strconv.FormatInt(size, 10),
				"uid=" + strconv.FormatUint(uint64(u.UID), 10), "gid=" + strconv.FormatUint(uint64(u.GID), 10)},
		})
		return nil
	}
}

// withVolumes bind-mounts each volume's directory, nosuid, nodev and
// noexec like /tmp.
func withVolumes(s Spec) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		for _, v := range s.Volumes {
			opts := []string{"rbind", "nosuid", "nodev", "noexec", "rprivate"}
			if v.ReadOnly {
				opts = append(opts, "ro")
			}
			sp.Mounts = append(sp.Mounts, specs.Mount{
				Destination: v.Path,
				Type:        "bind",
				Source:      filepath.Join(s.StateDir, v.Name),
				Options:     opts,
			})
		}
		return nil
	}
}

// sandboxPidsOverhead is added to a sandbox's pids limit: the host counts
// gVisor's own threads (about 25 when idle) in the sandbox's cgroup too.
const sandboxPidsOverhead = 64

// withLimits sets the CPU quota, the memory limit with swap equal to it
// (no swap) and the pids limit.
func withLimits(s Spec) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		if sp.Linux.Resources == nil {
			sp.Linux.Resources = &specs.LinuxResources{}
		}
		res := sp.Linux.Resources
		quota, period := s.CPUMillis*cfsPeriod/1000, uint64(cfsPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		memory, swap := s.MemoryBytes, s.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &memory, Swap: &swap}
		pids := s.Pids
		if s.Isolation == Sandbox {
			pids += sandboxPidsOverhead
		}
		res.Pids = &specs.LinuxPids{Limit: &pids}
		return nil
	}
}

// requiredMasks must stay masked whatever else changes the spec: they
// expose the host's memory, keys and timers.
var requiredMasks = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"}

// withKeptMasks checks that the default masked and read-only paths are
// still there; it is a guard against a later option dropping them.
func withKeptMasks(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
	for _, m := range requiredMasks {
		if !slices.Contains(sp.Linux.MaskedPaths, m) {
			return fmt.Errorf("internal: masked path %s is missing from the spec", m)
		}
	}
	if !slices.Contains(sp.Linux.ReadonlyPaths, "/proc/sys") || !slices.Contains(sp.Linux.ReadonlyPaths, "/proc/sysrq-trigger") {
		return fmt.Errorf("internal: /proc/sys is not read-only in the spec")
	}
	return nil
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// Network modes of a Spec (the manifest's spec.network.mode).
const (
	// NetworkNone: the container's own network namespace holds nothing
	// but loopback.
	NetworkNone = "none"
	// NetworkGateway: the container's namespace is joined to the agents'
	// network (a Network) between the task's creation and its start, and
	// its /etc/resolv.conf names the agents' resolver.
	NetworkGateway = "gateway"
)

// labelNetwork records a container's network mode, so that Start, the
// re-attachment after a restart and Delete know it from the container.
const labelNetwork = labelPrefix + "network"

// Network is the agents' network that gateway-mode containers join
// (appliance/netpolicy's Manager, adapted by omertad). Its methods are
// called with the container's id and must be safe for concurrent use.
type Network interface {
	// Ready says whether containers can join now; its error says why not
	// (no CAP_NET_ADMIN, no nftables), and refuses gateway-mode creates.
	Ready() error
	// ResolvConf is the /etc/resolv.conf gateway-mode containers get.
	ResolvConf() []byte
	// Attach joins the namespace at netnsPath (/proc/<pid>/ns/net of the
	// container's created task) to the network. Attaching again a
	// namespace already attached changes nothing.
	Attach(ctx context.Context, id, netnsPath string) error
	// Release forgets the container (deleted). An id never attached is
	// no error.
	Release(ctx context.Context, id string) error
}

// WithNetwork sets the agents' network gateway-mode containers join.
// Without one, a gateway-mode Spec is refused (ErrUnsupported).
func WithNetwork(n Network) Option { return func(r *Runtime) { r.net = n } }

// checkNetwork refuses a network mode this Runtime cannot give.
func (r *Runtime) checkNetwork(s Spec) error {
	switch s.Network {
	case "", NetworkNone:
		return nil
	case NetworkGateway:
	default:
		return invalid("network", "%q is neither %q nor %q", s.Network, NetworkNone, NetworkGateway)
	}
	if s.Isolation == Sandbox {
		// runsc reads the namespace's links when the sandbox is created,
		// before Attach could add one.
		return fmt.Errorf("creating %s: %w: network mode %q with isolation %q: gVisor cannot join the agents' network yet",
			quote(s.ID), ErrUnsupported, NetworkGateway, Sandbox)
	}
	if r.net == nil {
		return fmt.Errorf("creating %s: %w: network mode %q: the agents' network is not configured (gateway.enabled in omerta.yaml)",
			quote(s.ID), ErrUnsupported, NetworkGateway)
	}
	if err := r.net.Ready(); err != nil {
		return fmt.Errorf("creating %s: %w: network mode %q: the agents' network is not available: %w",
			quote(s.ID), ErrUnsupported, NetworkGateway, err)
	}
	return nil
}

// networkLabels records the mode on the container.
func networkLabels(s Spec, labels map[string]string) {
	if s.Network == NetworkGateway {
		labels[labelNetwork] = NetworkGateway
	}
}

// networkSpecOpts mounts the agents' resolv.conf into a gateway-mode
// container. The network namespace itself is the container's own, as for
// every container (withPrivateNamespaces).
func (r *Runtime) networkSpecOpts(s Spec) []oci.SpecOpts {
	if s.Network != NetworkGateway {
		return nil
	}
	return []oci.SpecOpts{func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		path, err := r.writeResolvConf()
		if err != nil {
			return err
		}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: path,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"}})
		return nil
	}}
}

// writeResolvConf writes the network's resolv.conf into the run directory
// (left alone when unchanged: mounted copies keep their inode).
func (r *Runtime) writeResolvConf() (string, error) {
	dir := filepath.Join(r.runDir, "network")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the network's directory: %w", err)
	}
	path := filepath.Join(dir, "resolv.conf")
	if _, err := atomicfile.WriteFile(path, r.net.ResolvConf(), 0o644); err != nil {
		return "", fmt.Errorf("writing the agents' resolv.conf: %w", err)
	}
	return path, nil
}

// attachNetwork joins a gateway-mode container's created task to the
// network, before the task starts: the agent's first packet already has
// its link and its rules.
func (r *Runtime) attachNetwork(ctx context.Context, ctr client.Container, task client.Task) error {
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return wrap("reading the labels of "+quote(ctr.ID()), err)
	}
	if labels[labelNetwork] != NetworkGateway {
		return nil
	}
	return r.attachPid(ctx, ctr.ID(), task.Pid())
}

func (r *Runtime) attachPid(ctx context.Context, id string, pid uint32) error {
	if r.net == nil {
		return fmt.Errorf("attaching %s: %w: the agents' network is not configured", quote(id), ErrUnsupported)
	}
	if pid == 0 {
		return fmt.Errorf("attaching %s: %w: its task has no process", quote(id), ErrState)
	}
	path := filepath.Join(r.procDir, strconv.FormatUint(uint64(pid), 10), "ns", "net")
	if err := r.net.Attach(ctx, id, path); err != nil {
		return fmt.Errorf("attaching %s to the agents' network: %w", quote(id), err)
	}
	return nil
}

// releaseNetwork tells the network a container is gone. A failure is
// logged, not returned: the container is gone whatever the network says,
// and ReattachNetwork's list lets the network forget it at its next start.
func (r *Runtime) releaseNetwork(ctx context.Context, id string) {
	if r.net == nil {
		return
	}
	ctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if err := r.net.Release(ctx, id); err != nil {
		r.log.Warn("releasing a container's place on the agents' network", "container", id, "err", err)
	}
}

// ReattachNetwork attaches again every gateway-mode container whose task
// runs (after omertad restarted: Attach does nothing for a link that is
// right, and gives back one a crash left half made), and returns the ids
// of all gateway-mode containers, running or not, for the network's
// reconciliation. One container's failure does not stop the others; the
// errors are joined.
func (r *Runtime) ReattachNetwork(ctx context.Context) ([]string, error) {
	if r.net == nil {
		return nil, fmt.Errorf("re-attaching containers: %w: the agents' network is not configured", ErrUnsupported)
	}
	ctx = r.ctx(ctx)
	cs, err := r.c.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%s", labelNetwork, NetworkGateway))
	if err != nil {
		return nil, wrap("listing gateway-mode containers", err)
	}
	ids := make([]string, 0, len(cs))
	var errs []error
	for _, c := range cs {
		ids = append(ids, c.ID)
		ctr, err := r.c.LoadContainer(ctx, c.ID)
		if err != nil {
			continue // deleted meanwhile
		}
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue // no task: attached when it starts
		}
		st, err := task.Status(ctx)
		if err != nil || (st.Status != client.Running && st.Status != client.Paused) {
			continue
		}
		if err := r.attachPid(ctx, c.ID, task.Pid()); err != nil {
			errs = append(errs, err)
		}
	}
	return ids, errors.Join(errs...)
}

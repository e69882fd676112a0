package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Labels the Runtime keeps on its containers.
const (
	labelIsolation = labelPrefix + "isolation"
	labelExitCode  = labelPrefix + "exit-code"
	labelExitedAt  = labelPrefix + "exited-at"
	labelOOM       = labelPrefix + "oom-killed"
)

// Create creates the agent's container (not its task): the snapshot and
// the locked-down spec. It does not start anything.
func (r *Runtime) Create(ctx context.Context, s Spec) (err error) {
	if err = s.normalize(); err != nil {
		return err
	}
	if err = r.checkNetwork(s); err != nil {
		return err
	}
	defer r.busy(s.ID)()
	ctx = r.ctx(ctx)
	if _, err := r.c.ContainerService().Get(ctx, s.ID); err == nil {
		return fmt.Errorf("creating container %q: %w", s.ID, ErrExists)
	}
	img, ic, err := r.imageFor(ctx, s)
	if err != nil {
		return err
	}
	cdiDirs, err := r.cdiDirs(s)
	if err != nil {
		return err
	}
	// Under a lease, a snapshot prepared before a later step fails is
	// collected with the lease instead of being left behind.
	ctx, done, err := r.lease(ctx)
	if err != nil {
		return err
	}
	defer func() { done(err != nil) }()
	labels := map[string]string{labelIsolation: string(s.Isolation)}
	for k, v := range s.Labels {
		labels[k] = v
	}
	networkLabels(s, labels)
	if s.GPUs != nil {
		if labels[labelGPUs], err = gpuLabel(s.GPUs); err != nil {
			return fmt.Errorf("recording the GPUs of %s: %w", quote(s.ID), err)
		}
	}
	_, err = r.c.NewContainer(ctx, s.ID,
		client.WithImageName(img.Name()),
		client.WithSnapshotter(r.snapshotter),
		client.WithNewSnapshot(s.ID, img),
		client.WithRuntime(plugins.RuntimeRuncV2, r.runtimeOptions(s.Isolation)),
		client.WithNewSpec(append(specOpts(s, ic, cdiDirs), r.networkSpecOpts(s)...)...),
		client.WithContainerLabels(labels),
	)
	return wrap("creating container "+quote(s.ID), err)
}

// imageFor finds the spec's image, checks its digest, makes sure it is
// unpacked and reads its config.
func (r *Runtime) imageFor(ctx context.Context, s Spec) (client.Image, ocispec.ImageConfig, error) {
	img, err := r.c.GetImage(ctx, s.Image)
	if err != nil {
		return nil, ocispec.ImageConfig{}, wrap("finding image "+quote(s.Image), err)
	}
	if s.Digest != "" {
		md, mf, err := platformManifest(ctx, r.c.ContentStore(), img.Target(), 0)
		if err != nil {
			return nil, ocispec.ImageConfig{}, err
		}
		e := entry{img: img.Metadata(), manifest: md, config: mf.Config}
		if !e.has(s.Digest) {
			return nil, ocispec.ImageConfig{}, fmt.Errorf("image %s: %w: expected %s, it is %s (manifest %s, config %s)",
				quote(s.Image), ErrDigestMismatch, s.Digest, img.Target().Digest, md.Digest, mf.Config.Digest)
		}
	}
	if ok, err := img.IsUnpacked(ctx, r.snapshotter); err != nil || !ok {
		if err := img.Unpack(ctx, r.snapshotter); err != nil {
			return nil, ocispec.ImageConfig{}, wrap("unpacking image "+quote(s.Image), err)
		}
	}
	cd, err := img.Config(ctx)
	if err != nil {
		return nil, ocispec.ImageConfig{}, wrap("finding the config of "+quote(s.Image), err)
	}
	var oi ocispec.Image
	if err := readJSON(ctx, r.c.ContentStore(), cd, &oi); err != nil {
		return nil, ocispec.ImageConfig{}, fmt.Errorf("reading the config of %s: %w", quote(s.Image), err)
	}
	return img, oi.Config, nil
}

// runtimeOptions are the runc shim's options: its own state root, and for
// the sandbox the gVisor wrapper in place of runc.
func (r *Runtime) runtimeOptions(iso Isolation) *options.Options {
	o := &options.Options{}
	if iso == Sandbox {
		o.BinaryName = r.wrapperPath()
		o.Root = r.runscRoot()
	} else if r.runtimeRoot != "" {
		o.Root = filepath.Join(r.runtimeRoot, "runc")
	}
	return o
}

// Start starts the container's task, its output going to the agent's log
// file (rotated first if it is too large). A task that exited before is
// deleted first, its exit recorded. If the start fails, the task, the
// container and its snapshot are all removed (runsc leaves a task in
// CREATED, with shim, gofer and sandbox alive, otherwise); the caller
// creates the container again to retry.
func (r *Runtime) Start(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	defer r.busy(id)()
	ctx = r.ctx(ctx)
	ctr, err := r.c.LoadContainer(ctx, id)
	if err != nil {
		return wrap("starting "+quote(id), err)
	}
	if err := r.clearExited(ctx, ctr); err != nil {
		return err
	}
	if _, err := r.Rotate(id); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, r.startTimeout)
	defer cancel()
	task, err := ctr.NewTask(sctx, r.logIO(id))
	if errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("starting %s: %w: its task exists", quote(id), ErrState)
	}
	if err == nil {
		err = r.attachNetwork(sctx, ctr, task)
	}
	if err == nil {
		err = startTask(sctx, task)
	}
	if err != nil {
		// By the error, not sctx.Err(): gRPC refuses a call past its
		// deadline before the context's timer has fired.
		if sentinel(err) == ErrTimeout && ctx.Err() == nil {
			err = fmt.Errorf("%w after %v: %w", ErrTimeout, r.startTimeout, err)
		}
		// discard and releaseNetwork clean up on a context of their own:
		// a start cut off by its deadline still leaves nothing behind.
		cerr := r.discard(ctx, ctr)
		r.releaseNetwork(ctx, id)
		return errors.Join(fmt.Errorf("starting %s: %w: %w", quote(id), ErrStartFailed, err), cerr)
	}
	return nil
}

// DefaultStartTimeout bounds creating and starting a task. containerd or a
// shim can hang (seen once under load: NewTask waited 19 minutes after a
// shim had been SIGKILLed), and a start that never returns holds the
// agent's lock for good. A gVisor agent starts in about 12 s under
// emulation.
const DefaultStartTimeout = 3 * time.Minute

// startTask waits before it starts: an exit that came first would
// otherwise be missed.
func startTask(ctx context.Context, task client.Task) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := task.Wait(wctx); err != nil {
		return err
	}
	return task.Start(ctx)
}

// clearExited deletes a task that has stopped (recording its exit) and
// refuses to go on when one is still running.
func (r *Runtime) clearExited(ctx context.Context, ctr client.Container) error {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap("starting "+quote(ctr.ID()), err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return wrap("starting "+quote(ctr.ID()), err)
	}
	if st.Status != client.Stopped {
		return fmt.Errorf("starting %s: %w: it is %s", quote(ctr.ID()), ErrState, st.Status)
	}
	return r.deleteTask(ctx, ctr, task)
}

// discard removes a container whose start failed: kill and delete the task
// (whatever state it reached), then the container and its snapshot.
func (r *Runtime) discard(ctx context.Context, ctr client.Container) error {
	ctx, cancel := cleanupCtx(ctx)
	defer cancel()
	var errs []error
	if task, err := ctr.Task(ctx, nil); err == nil {
		if err := deleteAnyTask(ctx, r.c, task); err != nil {
			errs = append(errs, wrap("removing the failed task", err))
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, wrap("removing the failed container", err))
	}
	return errors.Join(errs...)
}

// deleteAnyTask deletes a task in any state. A task left CREATED by a
// failed start is deleted straight away: runsc cannot signal a container
// that never started, and the client refuses to delete a created task that
// has a pid, but the shim deletes it (runsc then destroys the sandbox).
func deleteAnyTask(ctx context.Context, c *client.Client, task client.Task) error {
	st, err := task.Status(ctx)
	if err != nil {
		return err
	}
	if st.Status == client.Created {
		_, err := c.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: task.ID()})
		if err = errgrpc.ToNative(err); err == nil || errdefs.IsNotFound(err) {
			return nil
		}
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Stop sends the task SIGTERM, then SIGKILL to all its processes when it
// has not exited after grace, and deletes the task, recording its exit
// status (and whether memory ran out) on the container. A container
// without a task is already stopped.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	if err := validateID(id); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	// Busy: while containerd deletes the task, its shim is still there and
	// the task no longer listed; it is not lost.
	defer r.busy(id)()
	ctx = r.ctx(ctx)
	ctr, err := r.c.LoadContainer(ctx, id)
	if err != nil {
		return wrap("stopping "+quote(id), err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap("stopping "+quote(id), err)
	}
	if err := killTask(ctx, task, grace); err != nil {
		return fmt.Errorf("stopping %s: %w", quote(id), err)
	}
	return r.deleteTask(ctx, ctr, task)
}

func killTask(ctx context.Context, task client.Task, grace time.Duration) error {
	st, err := task.Status(ctx)
	if err != nil {
		return wrap("reading the task's state", err)
	}
	if st.Status == client.Stopped || st.Status == client.Created {
		return nil // nothing of the agent runs; deleting the task ends it
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := task.Wait(wctx)
	if err != nil {
		return wrap("waiting for the task", err)
	}
	if grace > 0 && st.Status == client.Running {
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return wrap("sending SIGTERM", err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(grace):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return wrap("sending SIGKILL", err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteTask deletes a stopped (or never started) task and records its
// exit on the container: the exit code, the time and whether the cgroup
// saw an OOM kill (read before the delete removes the cgroup). It asks the
// task service directly: the client refuses a CREATED task with a pid.
func (r *Runtime) deleteTask(ctx context.Context, ctr client.Container, task client.Task) error {
	oom := false
	if m, err := r.Metrics(ctx, ctr.ID()); err == nil {
		oom = m.OOMKills > 0
	}
	resp, err := r.c.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: task.ID()})
	if err = errgrpc.ToNative(err); err != nil && !errdefs.IsNotFound(err) {
		return wrap("deleting the task of "+quote(ctr.ID()), err)
	}
	labels := map[string]string{labelOOM: strconv.FormatBool(oom)}
	if resp != nil {
		labels[labelExitCode] = strconv.FormatUint(uint64(resp.ExitStatus), 10)
		if resp.ExitedAt != nil {
			labels[labelExitedAt] = resp.ExitedAt.AsTime().UTC().Format(time.RFC3339Nano)
		}
	}
	if _, err := ctr.SetLabels(ctx, labels); err != nil {
		return wrap("recording the exit of "+quote(ctr.ID()), err)
	}
	return nil
}

// Delete removes the container: its task (killed without grace, so Stop
// first for a clean exit), the container and its snapshot. The log and
// the volumes stay; PurgeLogs removes the logs.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	defer r.busy(id)() // as in Stop
	ctx = r.ctx(ctx)
	ctr, err := r.c.LoadContainer(ctx, id)
	if err != nil {
		return wrap("deleting "+quote(id), err)
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if err := deleteAnyTask(ctx, r.c, task); err != nil {
			return wrap("deleting the task of "+quote(id), err)
		}
	} else if !errdefs.IsNotFound(err) {
		return wrap("deleting "+quote(id), err)
	}
	err = ctr.Delete(ctx, client.WithSnapshotCleanup)
	if err == nil || errdefs.IsNotFound(err) {
		r.releaseNetwork(ctx, id)
		return nil
	}
	return wrap("deleting "+quote(id), err)
}

// prepareVolumes creates each volume's directory, owned by the agent's
// user, refusing one that exists as anything but a directory (a symbolic
// link there would mount another part of the host).
func prepareVolumes(s Spec, uid, gid uint32) error {
	for _, v := range s.Volumes {
		dir := filepath.Join(s.StateDir, v.Name)
		if err := os.MkdirAll(s.StateDir, 0o700); err != nil {
			return fmt.Errorf("creating the state directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating volume %s: %w", quote(v.Name), err)
		}
		fi, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("volume %s: %w", quote(v.Name), err)
		}
		if !fi.IsDir() {
			return invalid("volumes", "%s exists and is not a directory", quote(dir))
		}
		if err := os.Lchown(dir, int(uid), int(gid)); err != nil {
			return fmt.Errorf("volume %s: %w", quote(v.Name), err)
		}
	}
	return nil
}

// withVolumeDirs prepares the volumes once the user is known.
func withVolumeDirs(s Spec) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, sp *oci.Spec) error {
		return prepareVolumes(s, sp.Process.User.UID, sp.Process.User.GID)
	}
}

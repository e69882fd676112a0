package ctrtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// Namespace returns a fresh namespace name for the test; at t.Cleanup
// everything in it (tasks, containers, images, leases, content, snapshots)
// is removed and then the namespace itself. A failure there is a test
// error: a test must not leave anything behind.
func (d *Daemon) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "t-" + hex.EncodeToString(b)
	c := d.Client(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := Purge(ctx, c, ns); err != nil {
			t.Errorf("ctrtest: cleaning namespace %s: %v", ns, err)
		}
		if err := removeCgroups(ns); err != nil {
			t.Errorf("ctrtest: namespace %s: %v", ns, err)
		}
	})
	return ns
}

// sweep purges every namespace of the daemon.
func (d *Daemon) sweep(ctx context.Context) error {
	c, err := client.New(d.Address, client.WithTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		errs = append(errs, Purge(ctx, c, ns), removeCgroups(ns))
	}
	return errors.Join(errs...)
}

// Purge removes everything in namespace ns, then the namespace. It is a
// test helper: it kills without grace.
func Purge(ctx context.Context, c *client.Client, ns string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	steps := []struct {
		what string
		fn   func(context.Context, *client.Client) error
	}{
		{"containers", purgeContainers},
		{"images", purgeImages},
		{"leases", purgeLeases},
		{"content", purgeContent},
		{"snapshots", purgeSnapshots},
	}
	for _, s := range steps {
		if err := s.fn(ctx, c); err != nil {
			return fmt.Errorf("removing %s: %w", s.what, err)
		}
	}
	// Deleting the last image or lease schedules garbage collection; the
	// namespace can only go once that has run, hence the retries.
	var err error
	for range 50 {
		if err = c.NamespaceService().Delete(ctx, ns); err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("deleting namespace: %w", err)
}

func purgeContainers(ctx context.Context, c *client.Client) error {
	cs, err := c.Containers(ctx)
	if err != nil {
		return err
	}
	for _, ctr := range cs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("task %s: %w", ctr.ID(), err)
			}
		}
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", ctr.ID(), err)
		}
	}
	return nil
}

func purgeImages(ctx context.Context, c *client.Client) error {
	is := c.ImageService()
	imgs, err := is.List(ctx)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if err := is.Delete(ctx, img.Name, images.SynchronousDelete()); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func purgeLeases(ctx context.Context, c *client.Client) error {
	ls := c.LeasesService()
	all, err := ls.List(ctx)
	if err != nil {
		return err
	}
	for _, l := range all {
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func purgeContent(ctx context.Context, c *client.Client) error {
	cs := c.ContentStore()
	var dgsts []content.Info
	if err := cs.Walk(ctx, func(i content.Info) error { dgsts = append(dgsts, i); return nil }); err != nil {
		return err
	}
	for _, i := range dgsts {
		if err := cs.Delete(ctx, i.Digest); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// purgeSnapshots removes children before parents: each pass removes the
// snapshots nothing else builds on, until none is left.
func purgeSnapshots(ctx context.Context, c *client.Client) error {
	for _, name := range []string{"overlayfs", "native"} {
		sn := c.SnapshotService(name)
		for range 100 {
			infos, err := walkSnapshots(ctx, sn)
			if err != nil {
				return fmt.Errorf("listing %s snapshots: %w", name, err)
			}
			if len(infos) == 0 {
				break
			}
			parents := map[string]bool{}
			for _, i := range infos {
				parents[i.Parent] = true
			}
			for _, i := range infos {
				if !parents[i.Name] {
					if err := sn.Remove(ctx, i.Name); err != nil && !errdefs.IsNotFound(err) {
						return fmt.Errorf("snapshot %s: %w", i.Name, err)
					}
				}
			}
		}
	}
	return nil
}

func walkSnapshots(ctx context.Context, sn snapshots.Snapshotter) ([]snapshots.Info, error) {
	var out []snapshots.Info
	err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		out = append(out, i)
		return nil
	})
	return out, err
}

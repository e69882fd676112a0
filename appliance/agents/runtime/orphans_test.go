package runtime

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
)

func testOrphans(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	e.run(t, e.spec("keep", Container))
	e.run(t, e.spec("stray", Container))
	if err := e.rt.Create(ctx, e.spec("stray-created", Container)); err != nil {
		t.Fatal(err)
	}
	// What a process killed in the middle of a Create leaves: a lease
	// nobody holds, and the root snapshot it protects from containerd's
	// garbage collector (without the lease, the collector removes it).
	nctx := e.rt.ctx(ctx)
	l, err := e.rt.c.LeasesService().Create(nctx, leases.WithID("dead-lease"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.c.SnapshotService(DefaultSnapshotter).Prepare(leases.WithLease(nctx, l.ID), "loose", ""); err != nil {
		t.Fatal(err)
	}
	known := func(id string) bool { return id == "keep" }
	o, err := e.rt.Orphans(ctx, known)
	if err != nil {
		t.Fatal(err)
	}
	want := Orphans{Containers: []string{"stray", "stray-created"}, Tasks: []string{"stray"},
		Snapshots: []string{"loose"}, Leases: []string{l.ID}}
	if !slices.Equal(o.Containers, want.Containers) || !slices.Equal(o.Tasks, want.Tasks) ||
		!slices.Equal(o.Snapshots, want.Snapshots) || !slices.Equal(o.Leases, want.Leases) {
		t.Fatalf("Orphans = %+v, want %+v", o, want)
	}
	if err := e.rt.Cleanup(ctx, o); err != nil {
		t.Fatal(err)
	}
	if o, err := e.rt.Orphans(ctx, known); err != nil || !o.Empty() {
		t.Errorf("after Cleanup: %+v, %v", o, err)
	}
	if st, err := e.rt.Status(ctx, "keep"); err != nil || st.State != Running {
		t.Errorf("the known container: %+v, %v", st, err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(processesOf(e, "stray")) == 0 })
	// Nothing is orphaned while a call is working on it.
	done := e.rt.busy("in-flight")
	if err := e.rt.Create(ctx, e.spec("in-flight", Container)); err != nil {
		t.Fatal(err)
	}
	if o, _ := e.rt.Orphans(ctx, known); slices.Contains(o.Containers, "in-flight") {
		t.Error("a container being worked on was listed as an orphan")
	}
	done()
	if o, _ := e.rt.Orphans(ctx, known); !slices.Contains(o.Containers, "in-flight") {
		t.Error("an unknown container was not listed once no call worked on it")
	}
	e.rt.Delete(ctx, "in-flight")
}

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

// An orphan sweep at any moment after containerd made an import's lease
// must see the lease as this Runtime's: found orphan, it was deleted under
// the import, which then failed with "lease does not exist".
func testLeaseSweep(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	var swept [][]string
	e.rt.leaseMade = func(id string) {
		o, err := e.rt.orphanLeases(e.rt.ctx(ctx))
		if err != nil {
			t.Error(err)
		}
		if slices.Contains(o, id) {
			swept = append(swept, o)
		}
	}
	t.Cleanup(func() { e.rt.leaseMade = nil })
	if _, err := e.rt.ImportArchive(ctx, s.archive.Path); err != nil {
		t.Fatal(err)
	}
	if len(swept) != 0 {
		t.Errorf("a sweep right after the lease was made found it orphan: %v", swept)
	}
}

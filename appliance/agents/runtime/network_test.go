package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// fakeNetwork stands for appliance/netpolicy (tested with real links and
// rules in its own package and, joined to this runtime, in cmd/omerta's
// daemon_gateway_test.go): its Attach puts a link named link into
// the namespace it is given, so that the test sees from inside the
// container that Attach was handed the container's own namespace, before
// the agent ran.
type fakeNetwork struct {
	link  string
	ready error

	mu       sync.Mutex
	attached []string // "id path"
	released []string
}

func (f *fakeNetwork) Ready() error       { return f.ready }
func (f *fakeNetwork) ResolvConf() []byte { return []byte("nameserver 10.88.0.1\noptions edns0\n") }

func (f *fakeNetwork) Attach(_ context.Context, id, path string) error {
	f.mu.Lock()
	f.attached = append(f.attached, id+" "+path)
	f.mu.Unlock()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.LinkByName(f.link); err == nil {
		return nil // attached already
	}
	// A veth pair (both ends inside): the one link kind netpolicy needs too.
	return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: f.link}, PeerName: f.link + "p"})
}

func (f *fakeNetwork) Release(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, id)
	return nil
}

func (f *fakeNetwork) calls() (attached, released []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attached), slices.Clone(f.released)
}

// TestNetwork runs the gateway-mode hooks against a private containerd.
func TestNetwork(t *testing.T) {
	s := newSuite(t)
	t.Run("attach before start", func(t *testing.T) { testNetworkAttach(t, s) })
	t.Run("refusals", func(t *testing.T) { testNetworkRefusals(t, s) })
	t.Run("reattach", func(t *testing.T) { testNetworkReattach(t, s) })
}

func testNetworkAttach(t *testing.T, s *suite) {
	net := &fakeNetwork{link: "omtest0"}
	e := s.newEnv(t, WithNetwork(net))
	ctx := context.Background()
	sp := e.spec("gw", Container)
	sp.Network = NetworkGateway
	e.run(t, sp)
	st, err := e.rt.Status(ctx, "gw")
	if err != nil {
		t.Fatal(err)
	}
	attached, _ := net.calls()
	want := fmt.Sprintf("gw %s", filepath.Join("/proc", fmt.Sprint(st.Pid), "ns", "net"))
	if len(attached) != 1 || attached[0] != want {
		t.Fatalf("attach calls %q, want [%q]", attached, want)
	}
	// The link Attach made is in the agent's namespace, and was there
	// before its first instruction: the task was created, not started.
	if dev := e.sh(t, "gw", "cat /proc/net/dev"); !strings.Contains(dev, "omtest0:") {
		t.Fatalf("the container's /proc/net/dev lacks the attached link:\n%s", dev)
	}
	if got := e.sh(t, "gw", "cat /etc/resolv.conf"); got != strings.TrimSpace(string(net.ResolvConf())) {
		t.Fatalf("resolv.conf in the container = %q", got)
	}
	if out, err := e.rt.Exec(ctx, "gw", ExecSpec{Args: []string{"/bin/sh", "-c", "echo x > /etc/resolv.conf"}}); err != nil || out.ExitCode == 0 {
		t.Fatalf("the agent could write its resolv.conf: %+v %v", out, err)
	}
	// A none-mode container of the same Runtime is left alone.
	e.run(t, e.spec("plain", Container))
	if attached, _ := net.calls(); len(attached) != 1 {
		t.Fatalf("a none-mode container was attached: %q", attached)
	}
	if dev := e.sh(t, "plain", "cat /proc/net/dev"); strings.Contains(dev, "omtest0") {
		t.Fatalf("a none-mode container got a link:\n%s", dev)
	}
	if err := e.rt.Delete(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	if _, released := net.calls(); !slices.Equal(released, []string{"gw"}) {
		t.Fatalf("released %q after Delete, want [gw]", released)
	}
}

func testNetworkRefusals(t *testing.T, s *suite) {
	ctx := context.Background()
	gw := func(e *env, id string, iso Isolation) Spec {
		sp := e.spec(id, iso)
		sp.Network = NetworkGateway
		return sp
	}
	bare := s.newEnv(t)
	if err := bare.rt.Create(ctx, gw(bare, "nonet", Container)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("gateway mode without a network: %v, want ErrUnsupported naming why", err)
	}
	down := &fakeNetwork{link: "omtest0", ready: errors.New("no CAP_NET_ADMIN")}
	e := s.newEnv(t, WithNetwork(down))
	if err := e.rt.Create(ctx, gw(e, "down", Container)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no CAP_NET_ADMIN") {
		t.Fatalf("gateway mode with a network that is down: %v, want ErrUnsupported with its reason", err)
	}
	if err := e.rt.Create(ctx, gw(e, "sandboxed", Sandbox)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "gVisor") {
		t.Fatalf("gateway mode in a sandbox: %v, want ErrUnsupported", err)
	}
	sp := e.spec("odd", Container)
	sp.Network = "host"
	if err := e.rt.Create(ctx, sp); !errors.Is(err, ErrInvalid) {
		t.Fatalf("network mode host: %v, want ErrInvalid", err)
	}
	// None of those left a container behind; other modes still run.
	e.run(t, e.spec("fine", Container))
	if st, err := e.rt.List(ctx); err != nil || len(st) != 1 {
		t.Fatalf("containers after the refusals: %+v %v", st, err)
	}
}

// testNetworkReattach is omertad restarting: a new Runtime (another
// Network) on the same namespace attaches the running gateway-mode
// container again and lists every gateway-mode container.
func testNetworkReattach(t *testing.T, s *suite) {
	ctx := context.Background()
	first := &fakeNetwork{link: "omtest0"}
	e := s.newEnv(t, WithNetwork(first))
	sp := e.spec("gw", Container)
	sp.Network = NetworkGateway
	e.run(t, sp)
	idle := e.spec("gw-idle", Container)
	idle.Network = NetworkGateway
	if err := e.rt.Create(ctx, idle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.Delete(context.Background(), "gw-idle") })
	e.run(t, e.spec("plain", Container))

	second := &fakeNetwork{link: "omtest0"}
	rt, err := New(s.d.Client(t), WithNamespace(e.rt.ns), WithLogDir(e.rt.logDir), WithRunDir(e.rt.runDir),
		WithRuntimeRoot(s.d.RuntimeRoot), WithNetwork(second))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := rt.ReattachNetwork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"gw", "gw-idle"}) {
		t.Fatalf("gateway-mode containers %q, want [gw gw-idle]", ids)
	}
	attached, _ := second.calls()
	if len(attached) != 1 || !strings.HasPrefix(attached[0], "gw /proc/") {
		t.Fatalf("re-attached %q, want the running one only", attached)
	}
	if dev := e.sh(t, "gw", "grep -c omtest0: /proc/net/dev"); dev != "1" {
		t.Fatalf("the link is there %s times after re-attaching, want once", dev)
	}
	bare, err := New(s.d.Client(t), WithNamespace(e.rt.ns), WithLogDir(e.rt.logDir), WithRunDir(e.rt.runDir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.ReattachNetwork(ctx); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ReattachNetwork without a network: %v", err)
	}
}

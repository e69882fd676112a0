package probe

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// childEnv marks the copy of the test binary that runs inside `unshare -rn`.
const childEnv = "OMERTA_PROBE_NETNS_CHILD"

// TestNetworkNamespace builds a veth pair with addresses and a default route
// in a network namespace of its own and probes it through netlink. As root
// it makes the namespace with netns.New on a locked thread; otherwise it
// runs itself again under `unshare -rn` (an unprivileged user namespace).
func TestNetworkNamespace(t *testing.T) {
	var h *netlink.Handle
	switch {
	case os.Getenv(childEnv) != "":
		// Already alone in a fresh namespace.
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			t.Fatal(err)
		}
	case os.Geteuid() != 0:
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "-rn", exe, "-test.run=^TestNetworkNamespace$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		if !strings.Contains(string(out), "=== RUN") {
			t.Skipf("not root and `unshare -rn` cannot make a network namespace here: %v: %s", err, out)
		}
		if err != nil {
			t.Fatalf("in the namespace: %v\n%s", err, out)
		}
		return
	default:
		// netns.New moves this thread into the new namespace; the handle
		// stays bound to it after the thread is moved back.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		ns, err := netns.New()
		if err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		h, err = netlink.NewHandleAt(ns)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: the runtime then ends it with the
			// goroutine instead of reusing a thread in the wrong namespace.
			t.Fatal(serr)
		}
		runtime.UnlockOSThread()
		orig.Close()
		defer ns.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	defer h.Close()

	mac, _ := net.ParseMAC("02:00:5e:10:00:01")
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "probe0", MTU: 1400, HardwareAddr: mac},
		PeerName:  "probe1",
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.LinkAdd(veth))
	for _, name := range []string{"lo", "probe0", "probe1"} {
		l, err := h.LinkByName(name)
		must(err)
		must(h.LinkSetUp(l))
	}
	p0, err := h.LinkByName("probe0")
	must(err)
	for _, a := range []string{"192.0.2.10/24", "2001:db8::10/64"} {
		addr, err := netlink.ParseAddr(a)
		must(err)
		addr.Flags = 0x80 // IFA_F_NODAD: no wait for duplicate detection
		must(h.AddrAdd(p0, addr))
	}
	must(h.RouteAdd(&netlink.Route{LinkIndex: p0.Attrs().Index, Gw: net.ParseIP("192.0.2.1")}))

	var p problems
	n := probeNetwork(h, testReader(t, t.TempDir()), &p)
	if len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	var names []string
	for _, l := range n.Links {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{"lo", "probe0", "probe1"}) {
		t.Fatalf("links = %v", names)
	}
	l := n.Links[1]
	if l.Type != "veth" || l.MAC != "02:00:5e:10:00:01" || l.MTU != 1400 {
		t.Errorf("probe0 = %+v", l)
	}
	for _, want := range []string{"192.0.2.10/24", "2001:db8::10/64"} {
		if !slices.Contains(l.Addresses, want) {
			t.Errorf("probe0 addresses %v lack %s", l.Addresses, want)
		}
	}
	if !slices.Contains(n.Links[0].Addresses, "127.0.0.1/8") {
		t.Errorf("lo addresses = %v", n.Links[0].Addresses)
	}
	if len(n.DefaultRoutes) != 1 || n.DefaultRoutes[0] != (Route{Family: "ipv4", Gateway: "192.0.2.1", Link: "probe0"}) {
		t.Errorf("default routes = %+v", n.DefaultRoutes)
	}
}

package netpolicy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The network tests build, in namespaces of their own, what the appliance
// has: a "host" namespace holding the bridge, the rules and the resolver
// (the real host's links and nftables are never touched), a "wan"
// namespace behind it with web servers on TEST-NET-2 addresses, and agents
// whose namespaces are those of real processes (unshare -n sleep), reached
// through /proc/<pid>/ns/net as the agents runtime reaches a container's.
// The upstream DNS server listens on this process's loopback.

// quiet is the tests' logger.
var quiet = slog.New(slog.DiscardHandler)

// requireNetAdmin skips unless the test can make network namespaces.
func requireNetAdmin(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make network namespaces, bridges and nftables tables")
	}
	var hdr unix.CapUserHeader
	var data [2]unix.CapUserData
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	if err := unix.Capget(&hdr, &data[0]); err != nil || data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		t.Skip("needs CAP_NET_ADMIN to make bridges and nftables tables")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux) to start the agents' processes")
	}
}

// newNetns makes an empty network namespace and brings its lo up.
func newNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		orig.Close()
		t.Skipf("cannot make a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err) // the thread stays locked and dies with the test
	}
	runtime.UnlockOSThread()
	orig.Close()
	t.Cleanup(func() { ns.Close() })
	h := handleAt(t, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func handleAt(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// agentProc is an agent: a process alone in a network namespace.
type agentProc struct {
	cmd  *exec.Cmd
	path string
	ns   netns.NsHandle
}

func startAgent(t testing.TB) *agentProc {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd, path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	t.Cleanup(a.kill)
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ns, err := netns.GetFromPath(a.path)
		if err == nil && !ns.Equal(self) {
			a.ns = ns
			break
		}
		if err == nil {
			ns.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not get a network namespace of its own: %v", cmd.Process.Pid, err)
		}
	}
	return a
}

func (a *agentProc) kill() {
	if a.cmd.Process != nil {
		a.cmd.Process.Kill()
		a.cmd.Wait()
	}
	if a.ns.IsOpen() {
		a.ns.Close()
		a.ns = netns.None()
	}
}

// wanAddrs are the "internet" servers behind the host.
var (
	wanHost    = netip.MustParseAddr("198.51.100.1") // the host's own address towards the wan
	wanAllowed = netip.MustParseAddr("198.51.100.10")
	wanOther   = netip.MustParseAddr("198.51.100.20")
	wanWild    = netip.MustParseAddr("198.51.100.30")
)

// testEnv is one appliance in namespaces.
type testEnv struct {
	t        testing.TB
	host     netns.NsHandle
	wan      netns.NsHandle
	st       *store.Store
	cfg      Config
	upstream *fakeUpstream
	m        *Manager
}

func newTestEnv(t testing.TB, edit ...func(*Config)) *testEnv {
	t.Helper()
	requireNetAdmin(t)
	e := &testEnv{t: t, host: newNetns(t), wan: newNetns(t)}
	e.wireWan()
	e.upstream = startFakeUpstream(t)
	e.cfg = DefaultConfig()
	e.cfg.Upstreams = []string{e.upstream.addr}
	for _, f := range edit {
		f(&e.cfg)
	}
	e.st = openStore(t, filepath.Join(t.TempDir(), "state.db"))
	e.m = e.newManager()
	if err := e.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.m.Close() })
	e.serveHost()
	return e
}

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path, store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (e *testEnv) newManager() *Manager {
	e.t.Helper()
	m, err := New(e.st, e.cfg, WithNetns(e.host), WithLogger(quiet))
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// wireWan links host and wan, puts the servers' addresses in wan and lets
// the host forward.
func (e *testEnv) wireWan() {
	t := e.t
	h, w := handleAt(t, e.host), handleAt(t, e.wan)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "up0"
	must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "wan0", PeerNamespace: netlink.NsFd(int(e.wan))}))
	up, err := h.LinkByName("up0")
	must(t, err)
	must(t, h.AddrAdd(up, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(wanHost, 24))}))
	must(t, h.LinkSetUp(up))
	wl, err := w.LinkByName("wan0")
	must(t, err)
	for _, a := range []string{"198.51.100.2/24", "198.51.100.10/24", "198.51.100.20/24", "198.51.100.30/24"} {
		must(t, w.AddrAdd(wl, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(a))}))
	}
	must(t, w.LinkSetUp(wl))
	must(t, inNetns(e.host, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}))
	for _, a := range []netip.Addr{wanAllowed, wanOther, wanWild} {
		serveEcho(t, e.wan, netip.AddrPortFrom(a, 80), "wan "+a.String())
	}
}

// serveHost starts the "model gateway" and two listeners agents must not
// reach, all in the host namespace.
func (e *testEnv) serveHost() {
	gw := e.cfg.Gateway()
	serveEcho(e.t, e.host, netip.AddrPortFrom(gw, e.cfg.GatewayPorts[0]), "gateway")
	serveEcho(e.t, e.host, netip.AddrPortFrom(gw, 9999), "not a gateway port")
	serveEcho(e.t, e.host, netip.AddrPortFrom(wanHost, e.cfg.GatewayPorts[0]), "the host's other address")
}

// serveEcho listens in ns: each connection gets greeting, then its lines
// echoed back.
func serveEcho(t testing.TB, ns netns.NsHandle, at netip.AddrPort, greeting string) {
	t.Helper()
	var ln net.Listener
	must(t, inNetns(ns, func() (err error) { ln, err = net.Listen("tcp4", at.String()); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintln(c, greeting)
				io.Copy(c, c)
			}()
		}
	}()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeUpstream is the upstream DNS server, on this process's loopback.
type fakeUpstream struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	zone    map[string][]dns.RR // by lower-case fqdn
}

func startFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{zone: map[string][]dns.RR{}}
	for _, s := range []string{
		"allowed.test. 60 IN A 198.51.100.10",
		"other.test. 60 IN A 198.51.100.20",
		"www.wild.test. 60 IN A 198.51.100.30",
		"deep.a.wild.test. 60 IN A 198.51.100.30",
		"alias.test. 60 IN CNAME allowed.test.",
		"rebind.test. 60 IN A 10.88.0.3",
		"rebind.test. 60 IN A 192.168.1.1",
		"short.test. 0 IN A 198.51.100.10",
		"long.test. 86400 IN A 198.51.100.10",
	} {
		rr, err := dns.NewRR(s)
		must(t, err)
		name := strings.ToLower(rr.Header().Name)
		u.zone[name] = append(u.zone[name], rr)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	u.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: u}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return u
}

func (u *fakeUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	u.queries.Add(1)
	resp := new(dns.Msg)
	resp.SetReply(req)
	name := strings.ToLower(req.Question[0].Name)
	u.mu.Lock()
	rrs, ok := u.zone[name]
	u.mu.Unlock()
	switch {
	case strings.HasSuffix(name, ".bench.test."):
		rr, _ := dns.NewRR(name + " 300 IN A " + benchAddr(name).String())
		resp.Answer = []dns.RR{rr}
	case !ok:
		resp.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			resp.Answer = append(resp.Answer, dns.Copy(rr))
			if c, ok := rr.(*dns.CNAME); ok {
				resp.Answer = append(resp.Answer, u.zone[strings.ToLower(c.Target)]...)
			}
		}
	}
	w.WriteMsg(resp)
}

// query asks the resolver from inside ns.
func query(t testing.TB, ns netns.NsHandle, server netip.AddrPort, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	var r *dns.Msg
	err := inNetns(ns, func() (err error) {
		c := &dns.Client{Timeout: 3 * time.Second}
		r, _, err = c.Exchange(q, server.String())
		return err
	})
	if err != nil {
		t.Fatalf("query %s from the agent: %v", name, err)
	}
	return r
}

// blockTimeout is how long a refused connection may take to fail: a
// rejected one fails at once, a dropped one (ICMP rate limit) times out.
const blockTimeout = 700 * time.Millisecond

// dial connects from inside ns.
func dial(ns netns.NsHandle, to netip.AddrPort, local netip.Addr) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() (err error) {
		d := net.Dialer{Timeout: blockTimeout}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		c, err = d.Dial("tcp4", to.String())
		return err
	})
	return c, err
}

// reach connects from ns and returns the server's greeting.
func reach(t testing.TB, ns netns.NsHandle, to netip.AddrPort) string {
	t.Helper()
	c, err := dial(ns, to, netip.Addr{})
	if err != nil {
		t.Fatalf("connecting to %s: %v", to, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", to, err)
	}
	return strings.TrimSpace(line)
}

// blocked fails the test unless connecting from ns to `to` is refused by
// a rule (rejected: host unreachable; or dropped: a timeout). A refused
// connection (RST) would mean the packet got through to a closed port.
func blocked(t testing.TB, ns netns.NsHandle, to netip.AddrPort, local netip.Addr) {
	t.Helper()
	c, err := dial(ns, to, local)
	if err == nil {
		c.Close()
		t.Fatalf("connected to %s; the rules should have stopped it", to)
	}
	var ne net.Error
	if !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.EACCES) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connecting to %s: %v; want rejected (host unreachable) or dropped (timeout)", to, err)
	}
}

// agentAddrs returns the A records of an answer.
func answerAddrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func benchAddr(name string) netip.Addr {
	var n uint32
	fmt.Sscanf(name, "n%d.", &n)
	return addrOf(u32(netip.MustParseAddr("198.18.0.0")) + n%60000 + 1)
}

// attach starts an agent process and puts it on the network with e.
func (e *testEnv) attach(id string, eg Egress) *agentProc {
	e.t.Helper()
	a := startAgent(e.t)
	if _, err := e.m.Attach(context.Background(), id, a.path); err != nil {
		e.t.Fatal(err)
	}
	if err := e.m.SetPolicy(context.Background(), id, eg, "test"); err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *testEnv) nft() *nftables.Conn {
	e.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(e.host)))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// resolvedIn is what the kernel's dns set of agent id holds: address ->
// time left.
func (e *testEnv) resolvedIn(id string) map[string]time.Duration {
	e.t.Helper()
	c := e.nft()
	s, err := c.GetSetByName(&nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}, dnsSet(id))
	if err != nil {
		e.t.Fatalf("set %s: %v", dnsSet(id), err)
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for _, el := range els {
		a, _ := netip.AddrFromSlice(el.Key)
		out[a.String()] = el.Expires
	}
	return out
}

// objects lists the chains and sets of both tables ("inet chain
// agent-a1"), nil when the tables are gone.
func (e *testEnv) objects() []string {
	e.t.Helper()
	c := e.nft()
	var out []string
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		tables, err := c.ListTablesOfFamily(fam)
		must(e.t, err)
		for _, tb := range tables {
			if tb.Name != tableName {
				continue
			}
			chains, err := c.ListChainsOfTableFamily(fam)
			must(e.t, err)
			for _, ch := range chains {
				if ch.Table.Name == tableName {
					rules, err := c.GetRules(tb, ch)
					must(e.t, err)
					out = append(out, fmt.Sprintf("%s chain %s (%d rules)", famName(fam), ch.Name, len(rules)))
				}
			}
			sets, err := c.GetSets(tb)
			must(e.t, err)
			for _, s := range sets {
				out = append(out, fmt.Sprintf("%s set %s", famName(fam), s.Name))
			}
		}
	}
	slices.Sort(out)
	return out
}

func famName(f nftables.TableFamily) string {
	if f == nftables.TableFamilyBridge {
		return "bridge"
	}
	return "inet"
}

// hostLinks lists the host namespace's link names.
func (e *testEnv) hostLinks() map[string]netlink.Link {
	e.t.Helper()
	h := handleAt(e.t, e.host)
	// A dump the kernel interrupts (a link going while it is listed, as
	// waitGone waits for) is listed again, as the package does.
	links, err := retryDump(h.LinkList)
	must(e.t, err)
	out := map[string]netlink.Link{}
	for _, l := range links {
		out[l.Attrs().Name] = l
	}
	return out
}

// audited lists the audit log's actions on target.
func (e *testEnv) audited(target string) []string {
	e.t.Helper()
	recs, err := e.st.AuditLog(context.Background(), 0, 1000)
	must(e.t, err)
	var out []string
	for _, r := range recs {
		if r.Target == target {
			out = append(out, r.Action)
		}
	}
	return out
}

// echo writes a line on c and reads it back, or fails.
func echo(c net.Conn, r *bufio.Reader) error {
	c.SetDeadline(time.Now().Add(blockTimeout))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echoed %q", line)
	}
	return nil
}

// open connects from ns and reads the greeting, for a connection the test
// keeps.
func open(t testing.TB, ns netns.NsHandle, to netip.AddrPort) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := dial(ns, to, netip.Addr{})
	if err != nil {
		t.Fatalf("connecting to %s: %v", to, err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return c, r
}

package netpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// links makes the bridge and the agents' veth pairs through one netlink
// handle bound to the namespace the agents' network lives in.
type links struct {
	h   *netlink.Handle
	cfg *Config
}

// dumpRetries bounds the retries of a netlink dump the kernel interrupted
// (a link changed while it was listed).
const dumpRetries = 5

func retryDump[T any](list func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpRetries {
		if v, err = list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func notFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// ensureBridge makes the bridge, gives it the gateway address (and no
// other IPv4 address) and brings it up. A link of that name that is not a
// bridge is refused, not replaced.
func (l *links) ensureBridge() (netlink.Link, error) {
	name := l.cfg.Bridge
	br, err := l.h.LinkByName(name)
	if notFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = name, l.cfg.MTU
		if err := l.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("creating bridge %s: %w", name, err)
		}
		br, err = l.h.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("finding bridge %s: %w", name, err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s is a %s, not a bridge: %w", name, br.Type(), ErrInvalid)
	}
	if err := l.ownAddressOnly(br, netip.PrefixFrom(l.cfg.Gateway(), l.cfg.Subnet.Bits())); err != nil {
		return nil, fmt.Errorf("addressing bridge %s: %w", name, err)
	}
	if err := l.h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bringing bridge %s up: %w", name, err)
	}
	return br, nil
}

// ownAddressOnly leaves want as the only IPv4 address of link (on h).
func (l *links) ownAddressOnly(link netlink.Link, want netip.Prefix) error {
	return ownAddressOnly(l.h, link, want)
}

func ownAddressOnly(h *netlink.Handle, link netlink.Link, want netip.Prefix) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, unix.AF_INET) })
	if err != nil {
		return err
	}
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && p == want {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing address %s: %w", a.IPNet, err)
		}
	}
	return h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(want)})
}

// attach gives the agent in ns a link into the bridge: the host end
// (veth) a port of the bridge, isolated from the other agents' ports; the
// agent's end eth0 with addr and a default route via the gateway. A pair
// that is already there and right is kept, so that a restarted omertad does
// not cut the agent's connections.
func (l *links) attach(ns netns.NsHandle, veth string, addr netip.Addr, id string) (created bool, err error) {
	br, err := l.h.LinkByName(l.cfg.Bridge)
	if err != nil {
		return false, fmt.Errorf("finding bridge %s: %w", l.cfg.Bridge, err)
	}
	ah, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false, fmt.Errorf("opening the agent's network namespace: %w", err)
	}
	defer ah.Close()
	if !l.samePair(ah, ns, veth) {
		if err := l.makePair(ah, ns, veth, br); err != nil {
			return false, err
		}
		created = true
	}
	host, err := l.h.LinkByName(veth)
	if err != nil {
		return created, fmt.Errorf("finding link %s: %w", veth, err)
	}
	if err := l.configureHostEnd(host, br, id); err != nil {
		return created, err
	}
	return created, l.configureAgentEnd(ah, addr)
}

// samePair reports whether veth's peer is the eth0 inside ns.
func (l *links) samePair(ah *netlink.Handle, ns netns.NsHandle, veth string) bool {
	host, err := l.h.LinkByName(veth)
	if err != nil || host.Type() != "veth" {
		return false
	}
	peer, err := ah.LinkByName(agentIfName)
	if err != nil || peer.Type() != "veth" {
		return false
	}
	nsid, err := l.h.GetNetNsIdByFd(int(ns))
	if err != nil || nsid < 0 {
		return false
	}
	return host.Attrs().ParentIndex == peer.Attrs().Index && peer.Attrs().ParentIndex == host.Attrs().Index &&
		host.Attrs().NetNsID == nsid
}

// makePair removes what is in the way (a stale host end, an eth0 in the
// agent's namespace) and creates the pair with its peer inside ns.
func (l *links) makePair(ah *netlink.Handle, ns netns.NsHandle, veth string, br netlink.Link) error {
	if _, err := l.remove(veth); err != nil {
		return err
	}
	if old, err := ah.LinkByName(agentIfName); err == nil {
		if err := ah.LinkDel(old); err != nil {
			return fmt.Errorf("removing the stale %s in the agent's namespace: %w", agentIfName, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = veth, l.cfg.MTU, br.Attrs().Index
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: agentIfName, PeerTxQLen: -1, PeerNamespace: netlink.NsFd(int(ns))}
	if err := l.h.LinkAdd(v); err != nil {
		return fmt.Errorf("creating link %s into the agent's namespace: %w", veth, err)
	}
	return nil
}

func (l *links) configureHostEnd(host, br netlink.Link, id string) error {
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := l.h.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("adding link %s to bridge %s: %w", host.Attrs().Name, l.cfg.Bridge, err)
		}
	}
	// An isolated port reaches the bridge (the host) but no other isolated
	// port: agents never see each other's frames.
	if err := l.h.LinkSetIsolated(host, true); err != nil {
		return fmt.Errorf("isolating link %s: %w", host.Attrs().Name, err)
	}
	if alias := "omerta agent " + id; host.Attrs().Alias != alias {
		if err := l.h.LinkSetAlias(host, alias); err != nil {
			return fmt.Errorf("naming link %s: %w", host.Attrs().Name, err)
		}
	}
	if err := l.h.LinkSetUp(host); err != nil {
		return fmt.Errorf("bringing link %s up: %w", host.Attrs().Name, err)
	}
	return nil
}

func (l *links) configureAgentEnd(ah *netlink.Handle, addr netip.Addr) error {
	eth, err := ah.LinkByName(agentIfName)
	if err != nil {
		return fmt.Errorf("finding %s in the agent's namespace: %w", agentIfName, err)
	}
	if err := ownAddressOnly(ah, eth, netip.PrefixFrom(addr, l.cfg.Subnet.Bits())); err != nil {
		return fmt.Errorf("addressing %s in the agent's namespace: %w", agentIfName, err)
	}
	if err := ah.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bringing %s up in the agent's namespace: %w", agentIfName, err)
	}
	if lo, err := ah.LinkByName("lo"); err == nil {
		if err := ah.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bringing lo up in the agent's namespace: %w", err)
		}
	}
	gw := l.cfg.Gateway().AsSlice()
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(gw), Family: unix.AF_INET}
	if err := ah.RouteReplace(route); err != nil {
		return fmt.Errorf("setting the agent's default route via %s: %w", l.cfg.Gateway(), err)
	}
	return nil
}

// remove deletes link name if it is there (the agent's end goes with it).
func (l *links) remove(name string) (bool, error) {
	link, err := l.h.LinkByName(name)
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := l.h.LinkDel(link); err != nil && !notFound(err) {
		return false, fmt.Errorf("removing link %s: %w", name, err)
	}
	return true, nil
}

// agentLinks lists the links named like an agent's host end.
func (l *links) agentLinks() ([]string, error) {
	all, err := retryDump(l.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var out []string
	for _, link := range all {
		if n := link.Attrs().Name; strings.HasPrefix(n, vethPrefix) && link.Type() == "veth" {
			out = append(out, n)
		}
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

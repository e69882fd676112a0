package probe

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Network is every link of the probed namespace and its default routes.
type Network struct {
	Links         []Link  `json:"links"`
	DefaultRoutes []Route `json:"default_routes"`
}

// Link is one network interface.
type Link struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // netlink's type: "device", "veth", "bridge", ...
	MAC   string `json:"mac,omitempty"`
	State string `json:"state"` // operational state: "up", "down", "unknown", ...
	MTU   int    `json:"mtu"`
	// SpeedMbps is from sysfs, absent when the driver does not report one
	// (virtual links, links without carrier).
	SpeedMbps *int     `json:"speed_mbps,omitempty"`
	Addresses []string `json:"addresses"` // CIDR form
}

// Route is a default route.
type Route struct {
	Family  string `json:"family"` // "ipv4" or "ipv6"
	Gateway string `json:"gateway,omitempty"`
	Link    string `json:"link"`
	Metric  int    `json:"metric"`
}

// dumpRetries bounds retries of a netlink dump that the kernel interrupted
// because the table changed underneath it (a link coming up at boot).
const dumpRetries = 5

// retryDump calls fn again while it reports ErrDumpInterrupted; its partial
// results are never used because they may miss or duplicate entries.
func retryDump[T any](fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpRetries {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("still interrupted after %d tries: %w", dumpRetries, err)
}

func probeNetwork(h Netlink, r *reader, p *problems) Network {
	n := Network{Links: []Link{}, DefaultRoutes: []Route{}}
	if h == nil {
		nh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			p.addf("opening netlink: %v", err)
			return n
		}
		defer nh.Close()
		h = nh
	}
	links, err := retryDump(h.LinkList)
	if err != nil {
		p.addf("listing links: %v", err)
		return n
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		n.Links = append(n.Links, probeLink(h, l, r, p))
	}
	sort.Slice(n.Links, func(i, j int) bool { return n.Links[i].Name < n.Links[j].Name })

	routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		p.addf("listing routes: %v", err)
		return n
	}
	n.DefaultRoutes = defaultRoutes(routes, names)
	return n
}

func probeLink(h Netlink, l netlink.Link, r *reader, p *problems) Link {
	a := l.Attrs()
	link := Link{
		Name:      a.Name,
		Type:      l.Type(),
		State:     a.OperState.String(),
		MTU:       a.MTU,
		Addresses: []string{},
	}
	if len(a.HardwareAddr) > 0 {
		link.MAC = a.HardwareAddr.String()
	}
	// The kernel answers EINVAL for links without a speed and -1 for
	// links that have one but no carrier; neither is a speed.
	if b, err := r.read("/sys/class/net/" + a.Name + "/speed"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			link.SpeedMbps = &v
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		p.addf("listing addresses of %s: %v", a.Name, err)
	}
	for _, ad := range addrs {
		if ad.IPNet != nil {
			link.Addresses = append(link.Addresses, ad.IPNet.String())
		}
	}
	sort.Strings(link.Addresses)
	return link
}

// defaultRoutes picks the default routes, IPv4 first, by metric.
func defaultRoutes(routes []netlink.Route, names map[int]string) []Route {
	out := []Route{}
	for _, rt := range routes {
		if !isDefault(rt.Dst) {
			continue
		}
		r := Route{Link: names[rt.LinkIndex], Metric: rt.Priority, Family: "ipv4"}
		if rt.Family == netlink.FAMILY_V6 {
			r.Family = "ipv6"
		}
		if rt.Gw != nil {
			r.Gateway = rt.Gw.String()
			if rt.Gw.To4() == nil {
				r.Family = "ipv6"
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Family != b.Family {
			return a.Family < b.Family
		}
		return a.Metric < b.Metric
	})
	return out
}

// isDefault accepts both shapes netlink has used for a default route: a nil
// destination and an all-zeros /0.
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0 && dst.IP.IsUnspecified()
}

package netpolicy

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// maxResolvConf bounds the resolv.conf read.
const maxResolvConf = 64 << 10

// UpstreamsFromResolvConf reads the host's resolvers (nameserver lines)
// from a resolv.conf, for Config.Upstreams: at most 4, port 53, in the
// file's order. A resolver on the agents' subnet (the resolver itself,
// which would loop) is left out, and so is any line that is not an
// address; a file with no usable resolver is an error naming it.
func UpstreamsFromResolvConf(path string, subnet netip.Prefix) ([]string, error) {
	b, err := safeio.ReadFile(path, maxResolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading the host's resolvers: %w", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() && len(out) < 4 {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" || subnet.Contains(a.Unmap()) || a.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the host's resolvers from %s: %w", quote(path), err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading the host's resolvers: %w", invalid("resolv.conf", "%s names no usable nameserver", quote(path)))
	}
	return out, nil
}

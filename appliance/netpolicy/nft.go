package netpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The nftables objects, all in two tables of our own so that nothing else's
// rules (the hardening profile's inet omerta, containerd's CNI) are touched:
//
//	table inet omerta_agents
//	  map agents { ipv4_addr : verdict }     agent address -> jump agent-<id>
//	  chain input       hook input:   iifname <bridge> jump from_agents_to_host
//	  chain forward     hook forward: iifname <bridge> jump from_agents;
//	                                  oifname <bridge> ct state established,related accept; reject
//	  chain postrouting nat:          agents' subnet leaving by another link: masquerade
//	  chain from_agents_to_host       established,related; gateway udp/tcp 53; gateway ports; reject
//	  chain from_agents               not IPv4: reject; to the agents' subnet: reject;
//	                                  ip saddr vmap @agents; reject
//	  chain agent-<id>                ct mark <m> accept (connections the policy in force allowed);
//	                                  ip daddr @cidr-<id> ct mark set <m> accept;
//	                                  ip daddr @dns-<id>  ct mark set <m> accept
//	  set cidr-<id> (interval)        the policy's networks
//	  set dns-<id>  (timeout, size)   addresses the resolver answered this agent, comment: the name
//	table bridge omerta_agents
//	  map ports { ifname : verdict }         host end of the agent's link -> jump port-<id>
//	  chain prerouting  hook prerouting: iifname vmap @ports
//	  chain port-<id>   IPv4 not from the agent's address, ARP not for it, any other ethertype: drop
const (
	tableName  = "omerta_agents"
	chainIn    = "input"
	chainFwd   = "forward"
	chainPost  = "postrouting"
	chainLocal = "from_agents_to_host"
	chainOut   = "from_agents"
	mapAgents  = "agents"
	chainPre   = "prerouting"
	mapPorts   = "ports"

	etherIPv4 = 0x0800
	etherARP  = 0x0806
	offARPSpa = 14 // sender protocol address in an IPv4-over-Ethernet ARP packet

	bridgeFilter = -200 // the bridge family's "filter" priority
)

func agentChain(id string) string { return "agent-" + id }
func cidrSet(id string) string    { return "cidr-" + id }
func dnsSet(id string) string     { return "dns-" + id }
func portChain(id string) string  { return "port-" + id }

// maxComment bounds the name kept in a resolved element's comment (the
// kernel's user data holds 256 bytes).
const maxComment = 200

// agentSpec is what the kernel holds for one agent.
type agentSpec struct {
	id       string
	addr     netip.Addr
	veth     string
	mark     uint32
	rules    *egressRules
	resolved []resolvedElem
}

// resolvedElem is one element of an agent's dns set.
type resolvedElem struct {
	addr    netip.Addr
	timeout time.Duration
	names   []string
}

// kernel writes the nftables objects through one netlink connection bound
// to the agents' network namespace. Callers serialise its use.
type kernel struct {
	conn    *nftables.Conn
	dial    func() (*nftables.Conn, error)
	cfg     *Config
	inet    *nftables.Table
	br      *nftables.Table
	agents  *nftables.Set
	ports   *nftables.Set
	setSize uint32
}

func newKernel(cfg *Config, dial func() (*nftables.Conn, error)) (*kernel, error) {
	c, err := dial()
	if err != nil {
		return nil, fmt.Errorf("opening nftables: %w", err)
	}
	k := &kernel{conn: c, dial: dial, cfg: cfg, setSize: uint32(cfg.Limits.ResolvedPerAgent),
		inet: &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet},
		br:   &nftables.Table{Name: tableName, Family: nftables.TableFamilyBridge},
	}
	k.agents = &nftables.Set{Table: k.inet, Name: mapAgents, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	k.ports = &nftables.Set{Table: k.br, Name: mapPorts, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict,
		KeyByteOrder: binaryutil.BigEndian} // so that nft prints the names
	return k, nil
}

func (k *kernel) close() error {
	if k.conn == nil {
		return nil
	}
	err := k.conn.CloseLasting()
	k.conn = nil
	return err
}

// flush sends the batch. After a failure the connection is replaced: the
// library keeps a serialisation error for good, and the kernel has undone
// the whole batch anyway.
func (k *kernel) flush(what string) error {
	err := k.conn.Flush()
	if err == nil {
		return nil
	}
	k.conn.CloseLasting()
	if c, derr := k.dial(); derr == nil {
		k.conn = c
	} else {
		err = errors.Join(err, derr)
	}
	return fmt.Errorf("%s (nftables): %w", what, err)
}

// rebuild replaces both tables, in one transaction, by what specs say:
// packets see the old rules or the new, never a mix or none.
func (k *kernel) rebuild(specs []agentSpec) error {
	c := k.conn
	for _, t := range []*nftables.Table{k.inet, k.br} {
		c.AddTable(t) // so that the delete finds one
		c.DelTable(t)
		c.AddTable(t)
	}
	if err := k.baseInet(); err != nil {
		return err
	}
	if err := k.baseBridge(); err != nil {
		return err
	}
	for i := range specs {
		if err := k.addAgentObjects(&specs[i]); err != nil {
			return err
		}
	}
	return k.flush("replacing the agents' rules")
}

func (k *kernel) hooked(t *nftables.Table, name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return k.conn.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &policy})
}

func (k *kernel) rule(ch *nftables.Chain, exprs ...[]expr.Any) {
	k.conn.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: cat(exprs...)})
}

func (k *kernel) baseInet() error {
	c, br, gw := k.conn, k.cfg.Bridge, k.cfg.Gateway()
	if err := c.AddSet(k.agents, nil); err != nil {
		return fmt.Errorf("building map %s: %w", mapAgents, err)
	}
	local := c.AddChain(&nftables.Chain{Name: chainLocal, Table: k.inet})
	out := c.AddChain(&nftables.Chain{Name: chainOut, Table: k.inet})
	in := k.hooked(k.inet, chainIn, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	fwd := k.hooked(k.inet, chainFwd, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	post := k.hooked(k.inet, chainPost, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)

	k.rule(in, ifnameCmp(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), one(jump(chainLocal)))
	k.rule(fwd, ifnameCmp(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), one(jump(chainOut)))
	k.rule(fwd, ifnameCmp(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), ctEstablished(), one(accept))
	k.rule(fwd, ifnameCmp(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), one(reject))
	k.rule(post, isIPv4(), ipInPrefix(offSaddr, expr.CmpOpEq, k.cfg.Subnet),
		ifnameCmp(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br), one(&expr.Masq{}))

	k.rule(local, ctEstablished(), one(accept))
	toGW := cat(isIPv4(), ipCmp(offDaddr, expr.CmpOpEq, gw))
	k.rule(local, toGW, dport(unix.IPPROTO_UDP, k.cfg.DNSPort), one(accept))
	k.rule(local, toGW, dport(unix.IPPROTO_TCP, k.cfg.DNSPort), one(accept))
	for _, p := range k.cfg.GatewayPorts {
		k.rule(local, toGW, dport(unix.IPPROTO_TCP, p), one(accept))
	}
	k.rule(local, one(reject))

	k.rule(out, notIPv4(), one(reject))
	k.rule(out, isIPv4(), ipInPrefix(offDaddr, expr.CmpOpEq, k.cfg.Subnet), one(reject))
	k.rule(out, isIPv4(), one(loadIP(offSaddr), vmap(mapAgents)))
	k.rule(out, one(reject))
	return nil
}

func (k *kernel) baseBridge() error {
	if err := k.conn.AddSet(k.ports, nil); err != nil {
		return fmt.Errorf("building map %s: %w", mapPorts, err)
	}
	pre := k.hooked(k.br, chainPre, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRef(bridgeFilter))
	k.rule(pre, one(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, vmap(mapPorts)))
	return nil
}

func (k *kernel) cidrSetOf(id string) *nftables.Set {
	return &nftables.Set{Table: k.inet, Name: cidrSet(id), Interval: true, KeyType: nftables.TypeIPAddr}
}

func (k *kernel) dnsSetOf(id string) *nftables.Set {
	return &nftables.Set{Table: k.inet, Name: dnsSet(id), HasTimeout: true, KeyType: nftables.TypeIPAddr, Size: k.setSize}
}

// addAgentObjects adds one agent's sets, chains and map entries.
func (k *kernel) addAgentObjects(s *agentSpec) error {
	c := k.conn
	if err := c.AddSet(k.cidrSetOf(s.id), cidrElements(s.rules)); err != nil {
		return fmt.Errorf("building set %s: %w", cidrSet(s.id), err)
	}
	if err := c.AddSet(k.dnsSetOf(s.id), dnsElements(s.resolved)); err != nil {
		return fmt.Errorf("building set %s: %w", dnsSet(s.id), err)
	}
	k.agentRules(c.AddChain(&nftables.Chain{Name: agentChain(s.id), Table: k.inet}), s.id, s.mark)
	if err := c.SetAddElements(k.agents, []nftables.SetElement{{Key: addr4(s.addr), VerdictData: jump(agentChain(s.id))}}); err != nil {
		return fmt.Errorf("adding agent %s to map %s: %w", s.id, mapAgents, err)
	}
	pc := c.AddChain(&nftables.Chain{Name: portChain(s.id), Table: k.br})
	k.rule(pc, etherType(expr.CmpOpEq, etherIPv4), ipCmp(offSaddr, expr.CmpOpNeq, s.addr), one(drop))
	k.rule(pc, etherType(expr.CmpOpEq, etherARP), ipCmp(offARPSpa, expr.CmpOpNeq, s.addr), one(drop))
	k.rule(pc, etherType(expr.CmpOpNeq, etherIPv4), one(&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: be16(etherARP)}, drop))
	if err := c.SetAddElements(k.ports, []nftables.SetElement{{Key: ifname(s.veth), VerdictData: jump(portChain(s.id))}}); err != nil {
		return fmt.Errorf("adding link %s to map %s: %w", s.veth, mapPorts, err)
	}
	return nil
}

// agentRules fills agent-<id>: connections marked under the policy in
// force pass; a new one (or one from an older policy) passes only to the
// policy's networks or the addresses resolved for this agent, and is then
// marked.
func (k *kernel) agentRules(ch *nftables.Chain, id string, mark uint32) {
	k.rule(ch, ctEstablished(), ctMarkIs(mark), one(accept))
	k.rule(ch, isIPv4(), ipInSet(offDaddr, cidrSet(id)), ctMarkSet(mark), one(accept))
	k.rule(ch, isIPv4(), ipInSet(offDaddr, dnsSet(id)), ctMarkSet(mark), one(accept))
}

// addAgent adds one agent's objects to the running tables.
func (k *kernel) addAgent(s *agentSpec) error {
	if err := k.addAgentObjects(s); err != nil {
		return err
	}
	return k.flush("adding the rules of agent " + s.id)
}

// removeAgent removes one agent's objects.
func (k *kernel) removeAgent(id string, addr netip.Addr, veth string) error {
	c := k.conn
	if err := c.SetDeleteElements(k.agents, []nftables.SetElement{{Key: addr4(addr)}}); err != nil {
		return err
	}
	if err := c.SetDeleteElements(k.ports, []nftables.SetElement{{Key: ifname(veth)}}); err != nil {
		return err
	}
	for _, ch := range []*nftables.Chain{{Name: agentChain(id), Table: k.inet}, {Name: portChain(id), Table: k.br}} {
		c.FlushChain(ch)
		c.DelChain(ch)
	}
	c.DelSet(k.cidrSetOf(id))
	c.DelSet(k.dnsSetOf(id))
	return k.flush("removing the rules of agent " + id)
}

// setPolicy puts a new policy in force for one agent, in one transaction:
// its networks, its mark, and, when recheck, a fresh dns set holding only
// the resolved addresses in keep (those still allowed).
func (k *kernel) setPolicy(s *agentSpec, recheck bool) error {
	c := k.conn
	cidr := k.cidrSetOf(s.id)
	c.FlushSet(cidr)
	if els := cidrElements(s.rules); len(els) > 0 {
		if err := c.SetAddElements(cidr, els); err != nil {
			return err
		}
	}
	if recheck {
		ch := &nftables.Chain{Name: agentChain(s.id), Table: k.inet}
		c.FlushChain(ch)
		// A new set instead of deleting elements: an element the kernel
		// has just expired would make a delete, and the whole batch, fail.
		c.DelSet(k.dnsSetOf(s.id))
		if err := c.AddSet(k.dnsSetOf(s.id), dnsElements(s.resolved)); err != nil {
			return err
		}
		k.agentRules(ch, s.id, s.mark)
	}
	return k.flush("applying the egress policy of agent " + s.id)
}

// addResolved puts addresses into an agent's dns set; an address already
// there gets the new timeout.
func (k *kernel) addResolved(id string, els []resolvedElem) error {
	if err := k.conn.SetAddElements(k.dnsSetOf(id), dnsElements(els)); err != nil {
		return err
	}
	return k.flush("opening resolved addresses for agent " + id)
}

// readResolved returns the elements of every agent's dns set, so that a
// restarted omertad keeps what it had answered (the agents still hold
// those answers in their caches).
func (k *kernel) readResolved() (map[string][]resolvedElem, error) {
	if _, err := k.conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading table inet %s: %w", tableName, err)
	}
	sets, err := k.conn.GetSets(k.inet)
	if err != nil {
		return nil, fmt.Errorf("listing the sets of table inet %s: %w", tableName, err)
	}
	out := map[string][]resolvedElem{}
	for _, s := range sets {
		id, ok := strings.CutPrefix(s.Name, "dns-")
		if !ok || !s.HasTimeout {
			continue
		}
		els, err := k.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("reading set %s: %w", s.Name, err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok || !a.Is4() || e.Expires <= time.Second {
				continue
			}
			out[id] = append(out[id], resolvedElem{addr: a, timeout: e.Expires, names: splitComment(e.Comment)})
		}
	}
	return out, nil
}

// remove deletes both tables.
func (k *kernel) remove() error {
	for _, t := range []*nftables.Table{k.inet, k.br} {
		k.conn.AddTable(t)
		k.conn.DelTable(t)
	}
	return k.flush("removing the agents' rules")
}

// cidrElements is the interval set's form of the policy's networks: a
// start element per range and an end element just past it (none when the
// range runs to 255.255.255.255).
func cidrElements(r *egressRules) []nftables.SetElement {
	if r == nil {
		return nil
	}
	var els []nftables.SetElement
	for _, rg := range r.ranges() {
		els = append(els, nftables.SetElement{Key: addr4(addrOf(rg.from))})
		if rg.to != ^uint32(0) {
			els = append(els, nftables.SetElement{Key: addr4(addrOf(rg.to + 1)), IntervalEnd: true})
		}
	}
	return els
}

func dnsElements(rs []resolvedElem) []nftables.SetElement {
	els := make([]nftables.SetElement, 0, len(rs))
	for _, r := range rs {
		t := max(r.timeout, time.Second)
		els = append(els, nftables.SetElement{Key: addr4(r.addr), Timeout: t, Comment: joinComment(r.names)})
	}
	return els
}

// joinComment keeps the names an address was resolved for (as many as
// fit), so that after a restart a policy change can still tell which
// addresses it must close.
func joinComment(names []string) string {
	var b strings.Builder
	for _, n := range names {
		if b.Len()+len(n)+1 > maxComment {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n)
	}
	return b.String()
}

func splitComment(c string) []string {
	var out []string
	for _, n := range strings.Fields(c) {
		if name, _, reason := normalizeName(n, false); reason == "" {
			out = append(out, name)
		}
	}
	return out
}

// Package netpolicy is the agents' network in "gateway" mode: egress
// enforced in the kernel, so that an agent that ignores proxy variables
// (or opens raw TCP) reaches nothing its policy does not list.
//
// # Shape
//
// A bridge (Config.Bridge, default omerta0) made with netlink holds the
// gateway address, the first of Config.Subnet (default 10.88.0.0/24, so
// 10.88.0.1). Each agent gets an address of the subnet, allocated in
// SQLite (Schema: netpolicy_network, netpolicy_agents) so that it survives
// restarts, and a veth pair: the host end (omv + 11 hex digits of the id's
// SHA-256) is an isolated port of the bridge (agents never see each
// other's frames), the other end is eth0 in the agent's network namespace,
// with the address and a default route via the gateway. On the gateway
// address the agent may reach the model gateway (Config.GatewayPorts, TCP)
// and this package's resolver (Config.DNSPort, UDP and TCP); nothing else
// of the host.
//
// # Rules
//
// The rules live in two nftables tables of their own, written over netlink
// (github.com/google/nftables, never the nft binary), so that the
// hardening profile's inet omerta table and containerd's are left alone:
// inet omerta_agents filters at input (agent to host) and forward (agent
// to anywhere else) and masquerades what leaves by another link; bridge
// omerta_agents drops, on each agent's port, IPv4 not from the agent's own
// address, ARP not for it, and every other ethertype. nft.go draws the
// whole ruleset. By default an agent reaches nothing but the gateway's
// ports; its policy (Egress) adds networks (an interval set per agent) and
// names, whose answered addresses the resolver puts into a timeout set
// per agent. Other agents' addresses are never reachable, whatever a
// policy or an answer says.
//
// Every change is one nftables transaction: packets see the old rules or
// the new, never none. Start rebuilds both tables from SQLite, keeping
// the addresses already resolved (read back from the kernel's sets, with
// their time left and, in each element's comment, the names they were
// resolved for), so a restarted omertad neither cuts the agents' open
// connections nor makes them resolve again.
//
// # Policy changes
//
// SetPolicy applies at once to a running agent. Each accepted connection
// is marked (conntrack mark) with the version of the agent's policy that
// allowed it, and the agent's chain accepts established traffic only under
// the current mark. A change that takes something away gets a new mark
// (handed out from SQLite, never reused), swaps the agent's set of
// resolved addresses for one holding only those whose names are still
// allowed, and so makes every open connection of the agent be checked
// again from its next packet: still allowed, it is marked anew and goes
// on; no longer allowed, it is rejected. A change that only adds keeps the
// mark and the connections.
//
// # Resolver
//
// The resolver (github.com/miekg/dns) listens on the gateway address. It
// knows the agent from the query's source address (the bridge's rules
// drop spoofed ones; AgentByAddr gives the same answer to the model
// gateway), answers only names the agent's policy allows (exact names
// and "*.example.com", which covers every name below example.com but not
// example.com), NXDOMAIN for the rest, and resolves allowed names through
// Config.Upstreams from omertad's own namespace. The A records of the
// answer's CNAME chain are put into the agent's set, with the answer's
// TTL bounded to MinTTL..MaxTTL plus Grace as the element's timeout,
// before the agent is told them; an address that could not be opened is
// never handed out (SERVFAIL instead). Addresses of the agents' subnet,
// loopback, link-local, multicast and reserved space are removed from
// answers, and private and shared space too unless AllowPrivateAnswers or
// the policy lists the network (no DNS rebinding onto the LAN). The
// network is IPv4 only: AAAA and other types get an empty answer for
// allowed names. Everything is bounded: one question per query, 512 bytes
// over UDP (the client's EDNS size up to 1232), CNAME chains of 8 links,
// 32 addresses per answer, queries in flight overall and per agent, a
// query rate per agent, TCP connections, cached answers, and the
// addresses one agent's set holds. Stats counts, Denials keeps the latest
// refusals with their reasons.
//
// Re-adding an element to a timeout set refreshes its timeout on Linux
// 6.10 and later (Debian trixie's 6.12 does); on older kernels an address
// answered again expires at its first timeout and the agent has to
// resolve again.
//
// # Lifecycle
//
// A Manager is a daemon.Service named "netpolicy" (Run = Start, wait,
// Close). Close stops the resolver and leaves the kernel state, so that
// agents stay confined and connected while omertad restarts; Teardown
// removes it all. The agents' runtime calls Attach with the container's
// /proc/<pid>/ns/net between creating the task and starting it, and again
// for each running agent after omertad starts (it does nothing when the
// link is right); Release when an agent is deleted; Reconcile with the ids
// of the agents that exist. Code that touches the OS takes its network
// namespace as a parameter (WithNetns): the tests run everything in
// namespaces they make.
package netpolicy

package hardening

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

const (
	nftFile    = "/etc/nftables.conf"
	nftTable   = "omerta"
	nftService = "nftables.service"
	nftWants   = "/etc/systemd/system/sysinit.target.wants/nftables.service"
)

var nftUnitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// admittedPorts are the TCP ports the input policy opens: the console, and
// SSH only when the site enables it (so that SSH never opens by default,
// and a live apply never locks out an enabled SSH session).
func admittedPorts(e *env) []int {
	ports := []int{e.opts.Site.Console.Port}
	if e.opts.Site.SSH.Enabled {
		ports = append(ports, 22)
	}
	sort.Ints(ports)
	return slices.Compact(ports)
}

func nftPortExpr(ports []int) string {
	if len(ports) == 1 {
		return strconv.Itoa(ports[0])
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// nftRuleset is the whole /etc/nftables.conf. It replaces only its own
// table (create, delete, create: idempotent in one transaction) and never
// says "flush ruleset", so containerd's and CNI's tables and forward chains
// survive a reload. It has no forward or output hook: container traffic is
// the runtime's to filter.
func nftRuleset(e *env) []string {
	rules := []string{
		"# Only table inet " + nftTable + " is replaced; other tables (containerd, CNI) are left alone.",
		"table inet " + nftTable,
		"delete table inet " + nftTable,
		"table inet " + nftTable + " {",
		"\tchain input {",
		"\t\ttype filter hook input priority filter; policy drop;",
		"\t\tiif \"lo\" accept",
		"\t\tct state established,related accept",
		"\t\tct state invalid drop",
		"\t\ticmp type { destination-unreachable, echo-request, time-exceeded, parameter-problem } accept",
		"\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
		"\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
		"\t\ttcp dport " + nftPortExpr(admittedPorts(e)) + " accept",
	}
	for _, r := range gatewayRules(e) {
		rules = append(rules, "\t\t"+r)
	}
	return append(rules, "\t}", "}")
}

// gatewayRules admit, when the site enables the agents' network, what
// agents may reach of the host: on the bridge, the bridge's own address,
// at the model gateway's port and the agents' resolver (UDP and TCP).
// Which agent may reach them, from which address, is omertad's table
// inet omerta_agents, on the same hook: a packet must pass both tables.
// Without these the policy drop above took every agent's model call and
// name lookup.
func gatewayRules(e *env) []string {
	g := e.opts.Site.Gateway
	if !g.Enabled {
		return nil
	}
	// config validated Bridge to letters, digits and "-_.": nothing to
	// escape inside nft's quotes.
	on := "iifname \"" + g.Bridge + "\" ip daddr " + g.SubnetPrefix().Addr().Next().String()
	dns := strconv.Itoa(config.GatewayDNSPort)
	return []string{
		on + " tcp dport " + strconv.Itoa(g.Port) + " accept",
		on + " tcp dport " + dns + " accept",
		on + " udp dport " + dns + " accept",
	}
}

var tcpDportRE = regexp.MustCompile(`tcp dport (\d+|\{[^}]*\}) accept`)

// nftPorts extracts the admitted TCP ports and whether an input hook chain
// with policy drop exists, from a ruleset text (our file or `nft list`).
func nftParse(text string) (ports []int, policyDrop, flush bool) {
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") {
			continue
		}
		if strings.Contains(t, "flush ruleset") {
			flush = true
		}
		if strings.Contains(t, "hook input") && strings.Contains(t, "policy drop") {
			policyDrop = true
		}
		if strings.HasPrefix(t, "iifname ") {
			continue // a rule for one link (gatewayRules), not the host's ports
		}
		for _, m := range tcpDportRE.FindAllStringSubmatch(t, -1) {
			for _, f := range strings.FieldsFunc(m[1], func(r rune) bool { return r == '{' || r == '}' || r == ',' || r == ' ' }) {
				if n, err := strconv.Atoi(f); err == nil {
					ports = append(ports, n)
				}
			}
		}
	}
	sort.Ints(ports)
	return slices.Compact(ports), policyDrop, flush
}

// nftRead returns the ruleset text to judge: the file, and live also what
// the kernel has loaded.
func (e *env) nftTexts() (file string, live string, ev []Evidence, err error) {
	data, exists, err := e.read(nftFile)
	if err != nil {
		return "", "", nil, err
	}
	ev = append(ev, fileEvidence(nftFile, data, exists, ""))
	if !e.opts.Live {
		return string(data), "", ev, nil
	}
	out, rerr := e.run("nft", "list", "table", "inet", nftTable)
	ev = append(ev, cmdEvidence("nft list table inet "+nftTable, out, firstLine(out)))
	if rerr != nil {
		return string(data), "", ev, fmt.Errorf("nft list table inet %s: %s", nftTable, firstLine(out))
	}
	return string(data), string(out), ev, nil
}

// nftCheck runs judge on the file and, live, on the loaded table.
func nftCheck(expected string, judge func(e *env, text string) (bool, string)) func(e *env) outcome {
	return func(e *env) outcome {
		o := outcome{expected: expected}
		file, live, ev, err := e.nftTexts()
		o.evidence = ev
		if err != nil {
			o.result, o.actual = Error, err.Error()
			return o
		}
		ok, actual := judge(e, file)
		if !ok {
			o.result, o.actual = Fail, nftFile+": "+actual
			return o
		}
		o.result, o.actual = Pass, actual
		if e.opts.Live {
			if ok, actual := judge(e, live); !ok {
				o.result, o.actual = Fail, "loaded ruleset: "+actual
			} else {
				o.actual = actual + " (file and loaded ruleset)"
			}
		}
		return o
	}
}

func nftControls() []Control {
	return []Control{nftInputPolicy(), nftAdmittedPorts(), nftAgentsGateway(), nftPreserveChains(), nftServiceEnabled()}
}

func nftInputPolicy() Control {
	return Control{
		ID:         "nft.input-policy",
		Title:      "nftables drops inbound traffic that no rule admits (default deny)",
		References: refs(cis("4.3.8"), srg("SRG-OS-000480-GPOS-00232")),
		Profiles:   all,
		owned:      func(e *env) (string, []string) { return nftFile, nftRuleset(e) },
		check: nftCheck("table inet "+nftTable+" input hook with policy drop", func(_ *env, t string) (bool, string) {
			_, drop, _ := nftParse(t)
			if !drop {
				return false, "no input hook chain with policy drop"
			}
			return true, "input hook chain with policy drop"
		}),
	}
}

func nftAdmittedPorts() Control {
	return Control{
		ID:         "nft.admitted-ports",
		Title:      "Only the console port, and SSH when the site enables it, are admitted",
		References: refs(cis("4.3.3"), srg("SRG-OS-000096-GPOS-00050")),
		Profiles:   all,
		check: func(e *env) outcome {
			want := admittedPorts(e)
			return nftCheck("tcp ports admitted: "+nftPortExpr(want), func(_ *env, t string) (bool, string) {
				got, _, _ := nftParse(t)
				return slices.Equal(got, want), "tcp ports admitted: " + nftPortExpr(got)
			})(e)
		},
	}
}

// linkRules are the accepting rules of a ruleset text that name an input
// link (gatewayRules' shape), in order.
func linkRules(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "iifname ") && strings.HasSuffix(t, " accept") {
			out = append(out, t)
		}
	}
	return out
}

func nftAgentsGateway() Control {
	return Control{
		ID:         "nft.agents-gateway",
		Title:      "From the agents' bridge, only the model gateway and the agents' resolver on the bridge's address are admitted",
		References: refs(cis("4.3.3")),
		Profiles:   all,
		check: func(e *env) outcome {
			want := gatewayRules(e)
			expected := "no rule for the agents' bridge (gateway disabled)"
			if len(want) > 0 {
				expected = strings.Join(want, "; ")
			}
			return nftCheck(expected, func(_ *env, t string) (bool, string) {
				got := linkRules(t)
				if len(got) == 0 {
					return len(want) == 0, "no rule for an input link"
				}
				return slices.Equal(got, want), strings.Join(got, "; ")
			})(e)
		},
	}
}

// nftPreserveChains is judged in the file only: a loaded ruleset does not
// show how it was loaded.
func nftPreserveChains() Control {
	return Control{
		ID:         "nft.preserve-runtime-chains",
		Title:      "The firewall configuration replaces only its own table, leaving containerd's forward chains",
		References: refs(cis("4.3.1")),
		Profiles:   all,
		check: func(e *env) outcome {
			o := outcome{expected: "no \"flush ruleset\" in " + nftFile}
			data, exists, err := e.read(nftFile)
			if err != nil {
				o.result, o.actual = Error, err.Error()
				return o
			}
			o.evidence = []Evidence{fileEvidence(nftFile, data, exists, "")}
			_, _, flush := nftParse(string(data))
			switch {
			case !exists:
				o.result, o.actual = Fail, nftFile+" does not exist"
			case flush:
				o.result, o.actual = Fail, "flushes the whole ruleset, which deletes containerd's and CNI's rules on reload"
			default:
				o.result, o.actual = Pass, "replaces only table inet "+nftTable
			}
			return o
		},
	}
}

func nftServiceEnabled() Control {
	return Control{
		ID:         "nft.service-enabled",
		Title:      "nftables.service loads the firewall at boot",
		References: refs(cis("4.3.2")),
		Profiles:   all,
		applies: func(e *env) (bool, string) {
			if nftUnit(e) == "" {
				return false, "nftables is not installed (no " + nftService + ")"
			}
			return true, ""
		},
		apply: func(e *env) ([]string, error) {
			changed, err := e.fs.Symlink(nftUnit(e), nftWants)
			e.dirs = map[string]dirResult{}
			if err != nil {
				return nil, fmt.Errorf("enabling %s: %w", nftService, err)
			}
			if !changed {
				return nil, nil
			}
			return []string{nftWants}, nil
		},
		check: func(e *env) outcome {
			o := outcome{expected: nftWants + " -> " + nftUnit(e)}
			t, err := e.fs.Readlink(nftWants)
			o.evidence = []Evidence{{Source: "readlink " + nftWants, SHA256: sum([]byte(t)), Excerpt: t}}
			if err != nil {
				o.result, o.actual = Fail, nftService+" is not enabled"
				return o
			}
			o.result, o.actual = Pass, "enabled ("+nftWants+" -> "+t+")"
			return o
		},
	}
}

func nftUnit(e *env) string {
	for _, d := range nftUnitDirs {
		if p := d + "/" + nftService; e.exists(p) {
			return p
		}
	}
	return ""
}

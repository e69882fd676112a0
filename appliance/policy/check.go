package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Bounds on what a document may say.
const (
	maxList        = 256
	maxDescription = 512
	maxCategory    = 64
	maxModelName   = 128
	maxSecretName  = 256
	maxPIDs        = 1 << 22
	maxGPUs        = 16
	maxVRAM        = 16 << 40
	maxPerMinute   = 100000
	maxTokens      = 1e15
	maxUSD         = 1e9
	maxAgents      = 100000
	maxTenantGPUs  = 1024
	maxTenantCPU   = 1 << 30 // millicores
	maxTenantBytes = 1 << 50
)

var (
	labelRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	signerRe = regexp.MustCompile(`^[0-9A-Fa-f]{16}$`)
	modelRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]*\*?$`)
)

// checker collects problems with their paths.
type checker struct {
	ps manifest.Problems
}

func (c *checker) add(path string, code manifest.Code, format string, a ...any) {
	c.ps = append(c.ps, manifest.Problem{Path: path, Code: code, Reason: fmt.Sprintf(format, a...)})
}

func checkDocument(d *Document) manifest.Problems {
	c := &checker{}
	c.subject(&d.Subject)
	c.text("description", d.Description, maxDescription)
	c.spec("spec", &d.Spec)
	return c.ps
}

func (c *checker) subject(s *Subject) {
	switch s.Kind {
	case SubjectAgent, SubjectTenant:
		if !labelRe.MatchString(s.Name) {
			c.add("subject.name", manifest.CodeInvalid, "%s is not a DNS label (lowercase letters, digits and -, at most 63)", quote(s.Name))
		}
	case SubjectCategory:
		s.Name = normCategory(s.Name)
		if s.Name == "" || len(s.Name) > maxCategory {
			c.add("subject.name", manifest.CodeInvalid, "a category has 1 to %d characters", maxCategory)
		} else {
			c.text("subject.name", s.Name, maxCategory)
		}
	case "":
		c.add("subject.kind", manifest.CodeRequired, "required: agent, category or tenant")
	default:
		c.add("subject.kind", manifest.CodeInvalid, "%s is not agent, category or tenant", quote(string(s.Kind)))
	}
}

// text refuses text a terminal would act on, and text over max bytes.
func (c *checker) text(path, s string, max int) {
	if len(s) > max {
		c.add(path, manifest.CodeRange, "longer than %d bytes", max)
		return
	}
	if i, _ := terminal.FirstUnsafe(s); i >= 0 {
		c.add(path, manifest.CodeInvalid, "holds a control or invisible character at byte %d", i)
	}
}

func (c *checker) spec(path string, s *Spec) {
	switch s.Isolation {
	case "", manifest.IsolationContainer, manifest.IsolationSandbox:
	default:
		c.add(path+".isolation", manifest.CodeInvalid, "%s is not container (runc) or sandbox (gVisor)", quote(string(s.Isolation)))
	}
	if n := s.Network; n != nil {
		c.modes(path+".network.modes", n.Modes)
		c.egress(path+".network.egress", n.Egress)
	}
	if g := s.GPU; g != nil {
		g.VRAM = c.bytes(path+".gpu.vram", g.VRAM, 0, maxVRAM)
	}
	if m := s.Max; m != nil {
		m.CPU = c.cpu(path+".max.cpu", m.CPU, manifest.MinCPUMillis, manifest.MaxCPUMillis)
		m.Memory = c.bytes(path+".max.memory", m.Memory, manifest.MinMemory, manifest.MaxMemory)
		c.count(path+".max.pids", m.PIDs, 16, maxPIDs)
		c.count(path+".max.gpus", m.GPUs, 0, maxGPUs)
	}
	if im := s.Images; im != nil {
		c.list(path+".images.digests", im.Digests, func(i int, v string) string {
			if !digestRe.MatchString(v) {
				return "is not a digest such as \"sha256:\" and 64 lowercase hex digits"
			}
			return ""
		})
		c.list(path+".images.signers", im.Signers, func(i int, v string) string {
			if !signerRe.MatchString(v) {
				return "is not a minisign key id (16 hex digits)"
			}
			im.Signers[i] = strings.ToUpper(v)
			return ""
		})
	}
	if m := s.Models; m != nil {
		c.list(path+".models.allowed", m.Allowed, func(i int, v string) string {
			if v != "*" && (len(v) > maxModelName || !modelRe.MatchString(v)) {
				return fmt.Sprintf("is not a model name (letters, digits and ._:/@+-, at most %d, an optional trailing *)", maxModelName)
			}
			return ""
		})
	}
	c.list(path+".secrets", s.Secrets, func(i int, v string) string {
		if v == "" || len(v) > maxSecretName || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return fmt.Sprintf("is not a secret key (1 to %d printable ASCII characters, such as \"/crm_api_key\")", maxSecretName)
		}
		return ""
	})
	if t := s.Tasks; t != nil {
		c.count(path+".tasks.perMinute", t.PerMinute, 0, maxPerMinute)
	}
	if b := s.Budget; b != nil {
		c.count(path+".budget.tokensPerMonth", b.TokensPerMonth, 0, maxTokens)
		c.usd(path+".budget.usdPerMonth", b.USDPerMonth)
	}
}

func (c *checker) modes(path string, modes []string) {
	c.list(path, modes, func(i int, v string) string {
		if v != manifest.NetworkNone && v != manifest.NetworkGateway {
			return "is not a network mode (none or gateway)"
		}
		return ""
	})
}

// egress checks and normalises each destination in place.
func (c *checker) egress(path string, list []string) {
	if !c.bound(path, len(list)) {
		return
	}
	seen := map[string]int{}
	for i, v := range list {
		p := manifest.Index(path, i)
		canon, _, err := parseDestination(v)
		if err != nil {
			c.add(p, manifest.CodeInvalid, "%s", err.Error())
			continue
		}
		if j, dup := seen[canon]; dup {
			c.add(p, manifest.CodeDuplicate, "%s is also at [%d]", quote(canon), j)
			continue
		}
		seen[canon] = i
		list[i] = canon
	}
}

// list checks each entry with bad (a reason, or "") and refuses
// duplicates and lists over the bound.
func (c *checker) list(path string, list []string, bad func(int, string) string) {
	if !c.bound(path, len(list)) {
		return
	}
	seen := map[string]int{}
	for i, v := range list {
		p := manifest.Index(path, i)
		if why := bad(i, v); why != "" {
			c.add(p, manifest.CodeInvalid, "%s %s", quote(v), why)
			continue
		}
		if j, dup := seen[v]; dup {
			c.add(p, manifest.CodeDuplicate, "%s is also at [%d]", quote(v), j)
			continue
		}
		seen[v] = i
	}
}

func (c *checker) bound(path string, n int) bool {
	if n > maxList {
		c.add(path, manifest.CodeTooMany, "%d entries; at most %d", n, maxList)
		return false
	}
	return true
}

func (c *checker) count(path string, n *int64, min, max int64) {
	if n != nil && (*n < min || *n > max) {
		c.add(path, manifest.CodeRange, "%d is outside %d to %d", *n, min, max)
	}
}

func (c *checker) usd(path string, f *float64) {
	if f != nil && (math.IsNaN(*f) || *f < 0 || *f > maxUSD) {
		c.add(path, manifest.CodeRange, "%s is outside 0 to %d", strconv.FormatFloat(*f, 'g', -1, 64), int64(maxUSD))
	}
}

// cpu checks a CPU quantity and returns its canonical form.
func (c *checker) cpu(path string, q manifest.Quantity, min, max int64) manifest.Quantity {
	if q == "" {
		return q
	}
	n, err := manifest.ParseCPU(string(q))
	if err != nil {
		c.add(path, manifest.CodeInvalid, "%s is not a CPU quantity such as \"2\" or \"500m\"", quote(string(q)))
		return q
	}
	if n < min || n > max {
		c.add(path, manifest.CodeRange, "%s is outside %s to %s", quote(string(q)), manifest.FormatCPU(min), manifest.FormatCPU(max))
		return q
	}
	return manifest.FormatCPU(n)
}

// bytes checks a size and returns its canonical form.
func (c *checker) bytes(path string, q manifest.Quantity, min, max int64) manifest.Quantity {
	if q == "" {
		return q
	}
	n, err := manifest.ParseBytes(string(q))
	if err != nil {
		c.add(path, manifest.CodeInvalid, "%s is not a size such as \"512Mi\" or \"8Gi\"", quote(string(q)))
		return q
	}
	if n < min || n > max {
		c.add(path, manifest.CodeRange, "%s is outside %s to %s", quote(string(q)), manifest.FormatBytes(min), manifest.FormatBytes(max))
		return q
	}
	return manifest.FormatBytes(n)
}

func checkTenantDocument(d *TenantDocument) manifest.Problems {
	c := &checker{}
	if !labelRe.MatchString(d.Name) {
		c.add("name", manifest.CodeInvalid, "%s is not a DNS label (lowercase letters, digits and -, at most 63)", quote(d.Name))
	}
	c.text("description", d.Description, maxDescription)
	q := &d.Quotas
	c.count("quotas.agents", q.Agents, 0, maxAgents)
	q.CPU = c.cpu("quotas.cpu", q.CPU, 0, maxTenantCPU)
	q.Memory = c.bytes("quotas.memory", q.Memory, 0, maxTenantBytes)
	c.count("quotas.gpus", q.GPUs, 0, maxTenantGPUs)
	q.VRAM = c.bytes("quotas.vram", q.VRAM, 0, maxTenantBytes)
	c.count("quotas.tokensPerMonth", q.TokensPerMonth, 0, maxTokens)
	c.usd("quotas.usdPerMonth", q.USDPerMonth)
	return c.ps
}

// quote shows a foreign value in a reason: quoted, escaped and cut short.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

package manifest

import (
	"errors"
	"fmt"
	"time"

	"github.com/distribution/reference"
)

// Defaults that Check fills in, documented in docs/agent-manifest.md.
const (
	DefaultCPU            Quantity = "1"
	DefaultMemory         Quantity = "512Mi"
	DefaultPIDs                    = 512
	DefaultBackoffInitial          = Duration(time.Second)
	DefaultBackoffMax              = Duration(5 * time.Minute)
	DefaultCrashFailures           = 5
	DefaultCrashWindow             = Duration(10 * time.Minute)
	DefaultTaskTimeout             = Duration(5 * time.Minute)
	DefaultTaskMaxOutput  Quantity = "1Mi"
)

// Check validates m and normalises it in place: defaults filled in,
// quantities and the image reference written in their canonical forms. It
// returns every problem found, each naming its field.
func Check(m *Manifest) Problems {
	var ps Problems
	if m.APIVersion != APIVersion {
		ps.add("apiVersion", CodeInvalid, "%s is not %s", quote(m.APIVersion), APIVersion)
	}
	if m.Kind != Kind {
		ps.add("kind", CodeInvalid, "%s is not %s", quote(m.Kind), Kind)
	}
	ps.checkMetadata(&m.Metadata)
	s := &m.Spec
	ps.checkImage(s.Image)
	ps.checkArgv(s)
	ps.checkEnv(s.Env)
	ps.checkConfig(s)
	ps.checkResources(&s.Resources)
	ps.checkNetwork(s)
	ps.checkVolumes(s.Volumes)
	ps.checkRestart(&s.Restart)
	switch s.Isolation {
	case "", IsolationContainer, IsolationSandbox:
	default:
		ps.add("spec.isolation", CodeInvalid, "%s is not container or sandbox", quote(string(s.Isolation)))
	}
	ps.checkTasks(s.Tasks)
	ps.checkPolicyHints(s.PolicyHints)
	return ps
}

func (ps *Problems) checkMetadata(md *Metadata) {
	ps.checkLabel("metadata.id", md.ID, true)
	ps.checkText("metadata.name", md.Name, textRule{max: maxName, required: true})
	if ps.checkText("metadata.version", md.Version, textRule{max: maxShort}) && md.Version != "" && !versionRe.MatchString(md.Version) {
		ps.add("metadata.version", CodeInvalid, "%s is not a version (letters, digits and . + _ -)", quote(md.Version))
	}
	ps.checkText("metadata.category", md.Category, textRule{max: maxShort})
	ps.checkText("metadata.framework", md.Framework, textRule{max: maxShort})
	ps.checkText("metadata.description", md.Description, textRule{max: maxDescription, lines: true})
	ps.checkText("metadata.icon", md.Icon, textRule{max: maxIcon})
	ps.checkWords("metadata.tags", md.Tags, maxTags, maxShort)
	ps.checkWords("metadata.capabilities", md.Capabilities, maxCaps, maxCapability)
}

// checkWords checks a list of short unique labels (tags, capabilities).
func (ps *Problems) checkWords(path string, words []string, maxItems, maxLen int) {
	if !ps.checkList(path, len(words), maxItems) {
		return
	}
	seen := map[string]bool{}
	for i, w := range words {
		p := Index(path, i)
		if !ps.checkText(p, w, textRule{max: maxLen, required: true}) {
			continue
		}
		if seen[w] {
			ps.add(p, CodeDuplicate, "%s is listed twice", quote(w))
		}
		seen[w] = true
	}
}

func (ps *Problems) checkImage(img *Image) {
	if img == nil {
		return
	}
	if !ps.checkText("spec.image.ref", img.Ref, textRule{max: maxImageRef, required: true}) {
		return
	}
	named, err := reference.ParseNormalizedNamed(img.Ref)
	if err != nil {
		ps.add("spec.image.ref", CodeInvalid, "%s is not an image reference such as \"registry.example/agents/tool:1.0\"%s", quote(img.Ref), refHint(err))
		return
	}
	if img.Digest != "" && !digestRe.MatchString(img.Digest) {
		ps.add("spec.image.digest", CodeInvalid, "%s is not sha256: followed by 64 lowercase hex digits", quote(img.Digest))
		return
	}
	if c, ok := named.(reference.Canonical); ok {
		d := c.Digest().String()
		if !digestRe.MatchString(d) {
			ps.add("spec.image.ref", CodeInvalid, "the digest in %s is not sha256: followed by 64 lowercase hex digits", quote(img.Ref))
			return
		}
		if img.Digest != "" && img.Digest != d {
			ps.add("spec.image.digest", CodeInvalid, "%s differs from the digest in spec.image.ref (%s)", quote(img.Digest), d)
			return
		}
		img.Digest = d
		// The digest pins the image; a tag, when given, stays for people.
		if t, ok := c.(reference.Tagged); ok {
			tagged, _ := reference.WithTag(reference.TrimNamed(named), t.Tag())
			img.Ref = tagged.String()
		} else {
			img.Ref = reference.TrimNamed(named).String()
		}
		return
	}
	if img.Digest != "" {
		if _, tagged := named.(reference.Tagged); !tagged {
			img.Ref = named.String()
			return
		}
	}
	img.Ref = reference.TagNameOnly(named).String()
}

func refHint(err error) string {
	switch {
	case errors.Is(err, reference.ErrNameContainsUppercase):
		return ": the repository name must be lowercase"
	case errors.Is(err, reference.ErrTagInvalidFormat):
		return ": the tag is not valid"
	case errors.Is(err, reference.ErrDigestInvalidFormat):
		return ": the digest is not valid"
	}
	return ""
}

func (ps *Problems) checkArgv(s *Spec) {
	for _, l := range []struct {
		path  string
		argv  []string
		max   int
		empty bool
	}{{"spec.command", s.Command, maxCommand, false}, {"spec.args", s.Args, maxArgs, true}} {
		if !ps.checkList(l.path, len(l.argv), l.max) {
			continue
		}
		for i, a := range l.argv {
			ps.checkText(Index(l.path, i), a, textRule{max: maxArg, required: !l.empty, lines: true})
		}
	}
}

func (ps *Problems) checkEnv(env []EnvVar) {
	if !ps.checkList("spec.env", len(env), maxEnv) {
		return
	}
	seen := map[string]bool{}
	for i, e := range env {
		p := Index("spec.env", i)
		if ps.checkText(p+".name", e.Name, textRule{max: maxEnvName, required: true}) {
			switch {
			case !envNameRe.MatchString(e.Name):
				ps.add(p+".name", CodeInvalid, "%s is not an environment variable name (letters, digits and _, not starting with a digit)", quote(e.Name))
			case seen[e.Name]:
				ps.add(p+".name", CodeDuplicate, "%s is set twice", quote(e.Name))
			}
			seen[e.Name] = true
		}
		ps.checkText(p+".value", e.Value, textRule{max: maxEnvValue, lines: true})
	}
}

func (ps *Problems) checkResources(r *Resources) {
	if r.CPU == "" {
		r.CPU = DefaultCPU
	}
	if n, err := ParseCPU(string(r.CPU)); err != nil {
		ps.add("spec.resources.cpu", CodeInvalid, "%s", unwrapQuantity(err))
	} else if n < MinCPUMillis || n > MaxCPUMillis {
		ps.add("spec.resources.cpu", CodeRange, "%s is outside %s to %s", quote(string(r.CPU)), FormatCPU(MinCPUMillis), FormatCPU(MaxCPUMillis))
	} else {
		r.CPU = FormatCPU(n)
	}
	if r.Memory == "" {
		r.Memory = DefaultMemory
	}
	if q, ok := ps.checkBytes("spec.resources.memory", r.Memory, MinMemory, MaxMemory); ok {
		r.Memory = q
	}
	if r.PIDs == 0 {
		r.PIDs = DefaultPIDs
	}
	if r.PIDs < 16 || r.PIDs > 65536 {
		ps.add("spec.resources.pids", CodeRange, "%d is outside 16 to 65536", r.PIDs)
	}
	if r.GPUs < 0 || r.GPUs > 16 {
		ps.add("spec.resources.gpus", CodeRange, "%d is outside 0 to 16", r.GPUs)
	}
}

// checkBytes parses a size and checks its bounds, returning its canonical
// form.
func (ps *Problems) checkBytes(path string, q Quantity, min, max int64) (Quantity, bool) {
	n, err := ParseBytes(string(q))
	if err != nil {
		ps.add(path, CodeInvalid, "%s", unwrapQuantity(err))
		return "", false
	}
	if n < min || n > max {
		ps.add(path, CodeRange, "%s is outside %s to %s", quote(string(q)), FormatBytes(min), FormatBytes(max))
		return "", false
	}
	return FormatBytes(n), true
}

// unwrapQuantity drops the ErrQuantity suffix, which a message does not need.
func unwrapQuantity(err error) string {
	msg := err.Error()
	suffix := ": " + ErrQuantity.Error()
	if len(msg) > len(suffix) && msg[len(msg)-len(suffix):] == suffix {
		return msg[:len(msg)-len(suffix)]
	}
	return msg
}

func (ps *Problems) checkNetwork(s *Spec) {
	switch s.Network.Mode {
	case "":
		s.Network.Mode = NetworkNone
	case NetworkNone, NetworkGateway:
		// Whether this appliance can give gateway mode (the agents'
		// network enabled and up) is the agents service's to say, at
		// deploy: a manifest is valid on any appliance.
	default:
		ps.add("spec.network.mode", CodeInvalid, "%s is not none or gateway", quote(s.Network.Mode))
	}
	if !ps.checkList("spec.ports", len(s.Ports), maxPorts) {
		return
	}
	seenPort, seenName := map[int]bool{}, map[string]bool{}
	for i := range s.Ports {
		p, path := &s.Ports[i], Index("spec.ports", i)
		if p.Port < 1 || p.Port > 65535 {
			ps.add(path+".port", CodeRange, "%d is outside 1 to 65535", p.Port)
		} else if seenPort[p.Port] {
			ps.add(path+".port", CodeDuplicate, "port %d is listed twice", p.Port)
		}
		seenPort[p.Port] = true
		switch p.Protocol {
		case "":
			p.Protocol = "tcp"
		case "tcp":
		default:
			ps.add(path+".protocol", CodeInvalid, "%s is not supported; only tcp", quote(p.Protocol))
		}
		if p.Name != "" && ps.checkLabel(path+".name", p.Name, false) {
			if seenName[p.Name] {
				ps.add(path+".name", CodeDuplicate, "%s is listed twice", quote(p.Name))
			}
			seenName[p.Name] = true
		}
	}
}

func (ps *Problems) checkTasks(t *Tasks) {
	if t == nil {
		return
	}
	if len(t.Command) == 0 {
		ps.add("spec.tasks.command", CodeRequired, "required: the command that runs one task")
	} else if ps.checkList("spec.tasks.command", len(t.Command), maxCommand) {
		for i, a := range t.Command {
			ps.checkText(Index("spec.tasks.command", i), a, textRule{max: maxArg, required: i == 0, lines: true})
		}
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultTaskTimeout
	}
	ps.checkDuration("spec.tasks.timeout", t.Timeout, time.Second, 24*time.Hour)
	if t.MaxOutput == "" {
		t.MaxOutput = DefaultTaskMaxOutput
	}
	if q, ok := ps.checkBytes("spec.tasks.maxOutput", t.MaxOutput, 1<<10, 64<<20); ok {
		t.MaxOutput = q
	}
}

func (ps *Problems) checkDuration(path string, d Duration, min, max time.Duration) {
	if d.D() < min || d.D() > max {
		ps.add(path, CodeRange, "%s is outside %s to %s", d, Duration(min), Duration(max))
	}
}

func (ps *Problems) checkPolicyHints(h *PolicyHints) {
	if h == nil {
		return
	}
	if h.SLAP95Ms != nil && (*h.SLAP95Ms < 1 || *h.SLAP95Ms > 3600_000) {
		ps.add("spec.policyHints.slaP95Ms", CodeRange, "%d is outside 1 to 3600000", *h.SLAP95Ms)
	}
	if h.BudgetUSDMax != nil && (*h.BudgetUSDMax < 0 || *h.BudgetUSDMax > 1e6) {
		ps.add("spec.policyHints.budgetUsdMax", CodeRange, "%s is outside 0 to 1000000", fmt.Sprint(*h.BudgetUSDMax))
	}
}

package catalog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// importTemplate maps an OMERTAOS AgentTemplate (apiVersion aion.os/v1):
// what has a meaning here (resources, GPUs, network, environment, policy
// hints) is kept, the rest is noted.
func importTemplate(im *importer, t *obj) *manifest.Manifest {
	t.get("apiVersion")
	t.get("kind")
	m := &manifest.Manifest{APIVersion: manifest.APIVersion, Kind: manifest.Kind}
	templateMetadata(im, t.child("metadata"), &m.Metadata)
	spec := t.child("spec")
	templateRuntime(im, spec.child("runtime"), &m.Spec)
	gpu := templateCapabilities(im, spec.child("capabilities"), &m.Spec)
	templateResources(im, spec.child("resources"), &m.Spec, gpu)
	templatePolicy(im, spec.child("policyOverrides"), &m.Spec)
	spec.drop("memory", "the OMERTAOS kernel's memory tiers (short, long, episodic TTLs) have no counterpart here")
	spec.drop("syscalls", "OMERTAOS kernel calls (tool.invoke, model.generate, ...) are not Linux system calls; containerd's default seccomp profile applies")
	templates := spec.child("templates")
	templates.drop("prompts", "prompts belong in the agent's image or its configuration")
	templates.rest()
	spec.rest()
	t.rest()
	im.check(m)
	return m
}

var notLabelChar = regexp.MustCompile(`[^a-z0-9-]+`)

func templateMetadata(im *importer, md *obj, out *manifest.Metadata) {
	name := md.str("name")
	out.ID = name
	im.set("metadata.id", md.at("name"))
	if id := strings.Trim(notLabelChar.ReplaceAllString(strings.ToLower(name), "-"), "-"); id != name && id != "" && len(id) <= 63 {
		out.ID = id
		im.note(md.at("name"), Approximated, fmt.Sprintf("%s is not a DNS label; the id is %s", strconv.Quote(name), strconv.Quote(id)))
	}
	out.Name = md.str("displayName")
	im.set("metadata.name", md.at("displayName"))
	if out.Name == "" {
		out.Name = name
		im.set("metadata.name", md.at("name"))
	}
	out.Version = md.str("version")
	im.set("metadata.version", md.at("version"))
	if p := md.str("persona"); p != "" {
		out.Description = p
		im.set("metadata.description", md.at("persona"))
		im.note(md.at("persona"), Approximated, "the persona is shown as metadata.description")
	}
	out.Tags = md.strs("tags")
	im.set("metadata.tags", md.at("tags"))
	md.rest()
}

func templateRuntime(im *importer, rt *obj, s *manifest.Spec) {
	rt.drop("language", "the language runtime comes with the agent's image")
	if entry := rt.str("entry"); entry != "" {
		if strings.ContainsAny(entry, "\"'\\$`|&;<>(){}*?~") {
			im.note(rt.at("entry"), Dropped, fmt.Sprintf("%s needs a shell to mean anything; set spec.command for the image", strconv.Quote(entry)))
		} else {
			s.Command = strings.Fields(entry)
			im.set("spec.command", rt.at("entry"))
			im.note(rt.at("entry"), Approximated, "split on spaces into spec.command; it runs only once spec.image names an image that holds it")
		}
	}
	if v, ok := rt.get("env"); ok {
		templateEnv(im, rt.at("env"), v, s)
	}
	rt.rest()
}

func templateEnv(im *importer, path string, v any, s *manifest.Spec) {
	list, ok := v.([]any)
	if !ok {
		im.problem(path, manifest.CodeType, "must be a list of name/value pairs, not "+kindOf(v))
		return
	}
	im.set("spec.env", path)
	for i, e := range list {
		o := im.obj(manifest.Index(path, i), e)
		s.Env = append(s.Env, manifest.EnvVar{Name: o.str("name"), Value: o.str("value")})
		o.rest()
	}
}

// gpuWish is what the template says about GPUs: from capabilities.gpu
// (a boolean, or "optional" in some upstream files) and resources.gpu.
type gpuWish string

func templateCapabilities(im *importer, c *obj, s *manifest.Spec) gpuWish {
	if b, ok := c.boolean("network"); ok && b {
		im.note(c.at("network"), Approximated, "network access needs spec.network.mode gateway (the policy issue); imported with mode none, loopback only")
	}
	if b, ok := c.boolean("filesystem"); ok && b {
		s.Volumes = []manifest.Volume{{Name: "data", MountPath: "/data"}}
		im.note(c.at("filesystem"), Approximated, "the agent gets one volume, data, at /data (its root filesystem stays read-only)")
	}
	if v, ok := c.get("subprocess"); ok {
		b, isBool := v.(bool)
		switch {
		case !isBool:
			im.problem(c.at("subprocess"), manifest.CodeType, "must be true or false, not "+kindOf(v))
		case b:
			im.note(c.at("subprocess"), Approximated, "processes may start others, up to spec.resources.pids")
		default:
			im.note(c.at("subprocess"), Approximated, "a container cannot forbid child processes; spec.resources.pids bounds them")
		}
	}
	var wish gpuWish
	if v, ok := c.get("gpu"); ok {
		switch v {
		case true:
			wish = "required"
		case false:
			wish = "none"
		case "optional", "required", "none":
			wish = gpuWish(v.(string))
		default:
			im.problem(c.at("gpu"), manifest.CodeInvalid, "must be true, false, required, optional or none")
		}
		im.set("spec.resources.gpus", c.at("gpu"))
	}
	c.rest()
	return wish
}

func templateResources(im *importer, r *obj, s *manifest.Spec, capWish gpuWish) {
	if v, ok := r.get("cpu"); ok {
		s.Resources.CPU = quantity(im, r.at("cpu"), v)
		im.set("spec.resources.cpu", r.at("cpu"))
	}
	if v, ok := r.get("memory"); ok {
		s.Resources.Memory = quantity(im, r.at("memory"), v)
		im.set("spec.resources.memory", r.at("memory"))
	}
	wish, path := capWish, "spec.capabilities.gpu"
	if g := r.str("gpu"); g != "" {
		switch g {
		case "required", "optional", "none":
		default:
			im.problem(r.at("gpu"), manifest.CodeInvalid, fmt.Sprintf("%s is not required, optional or none", strconv.Quote(g)))
		}
		if capWish != "" && gpuWish(g) != capWish {
			im.note(path, Dropped, fmt.Sprintf("spec.resources.gpu (%s) is used instead", strconv.Quote(g)))
		}
		wish, path = gpuWish(g), r.at("gpu")
		im.set("spec.resources.gpus", path)
	}
	switch wish {
	case "required":
		s.Resources.GPUs = 1
	case "optional":
		im.note(path, Approximated, "an optional GPU is imported as none (spec.resources.gpus 0); the GPU issue adds optional allocation")
	}
	r.rest()
}

func quantity(im *importer, path string, v any) manifest.Quantity {
	switch x := v.(type) {
	case string:
		return manifest.Quantity(x)
	case fmt.Stringer:
		return manifest.Quantity(x.String())
	}
	im.problem(path, manifest.CodeType, "must be a quantity, not "+kindOf(v))
	return ""
}

func templatePolicy(im *importer, p *obj, s *manifest.Spec) {
	if !p.has("sla") && !p.has("budget") && !p.has("privacy") {
		p.rest()
		return
	}
	h := &manifest.PolicyHints{}
	sla := p.child("sla")
	if n, ok := sla.number("p95_ms"); ok {
		if i, err := n.Int64(); err == nil {
			h.SLAP95Ms = &i
			im.set("spec.policyHints.slaP95Ms", sla.at("p95_ms"))
			im.note(sla.at("p95_ms"), Kept, "stored as spec.policyHints.slaP95Ms; not enforced until the policy issue")
		} else {
			im.problem(sla.at("p95_ms"), manifest.CodeType, "must be a whole number of milliseconds")
		}
	}
	sla.rest()
	budget := p.child("budget")
	if n, ok := budget.number("usd_max"); ok {
		if f, err := n.Float64(); err == nil {
			h.BudgetUSDMax = &f
			im.set("spec.policyHints.budgetUsdMax", budget.at("usd_max"))
			im.note(budget.at("usd_max"), Kept, "stored as spec.policyHints.budgetUsdMax; not enforced until the policy issue")
		}
	}
	budget.rest()
	privacy := p.child("privacy")
	if b, ok := privacy.boolean("allow_cloud"); ok {
		h.AllowCloud = &b
		im.note(privacy.at("allow_cloud"), Kept, "stored as spec.policyHints.allowCloud; not enforced until the policy issue")
	}
	privacy.rest()
	p.rest()
	if h.SLAP95Ms != nil || h.BudgetUSDMax != nil || h.AllowCloud != nil {
		s.PolicyHints = h
	}
}

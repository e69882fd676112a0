package agents

import (
	"slices"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// cloneManifest deep-copies m, so that what the API hands out cannot change
// the cached spec it came from.
func cloneManifest(m *manifest.Manifest) *manifest.Manifest {
	out := *m
	md := &out.Metadata
	md.Tags, md.Capabilities = slices.Clone(md.Tags), slices.Clone(md.Capabilities)
	sp := &out.Spec
	if sp.Image != nil {
		img := *sp.Image
		sp.Image = &img
	}
	sp.Command, sp.Args = slices.Clone(sp.Command), slices.Clone(sp.Args)
	sp.Env, sp.Ports, sp.Volumes = slices.Clone(sp.Env), slices.Clone(sp.Ports), slices.Clone(sp.Volumes)
	sp.Config, sp.ConfigSchema = manifest.CopyConfig(sp.Config), manifest.CopyConfig(sp.ConfigSchema)
	if b := sp.Restart.Backoff; b != nil {
		c := *b
		sp.Restart.Backoff = &c
	}
	if c := sp.Restart.CrashLoop; c != nil {
		d := *c
		sp.Restart.CrashLoop = &d
	}
	if t := sp.Tasks; t != nil {
		c := *t
		c.Command = slices.Clone(t.Command)
		sp.Tasks = &c
	}
	if h := sp.PolicyHints; h != nil {
		c := manifest.PolicyHints{}
		if h.SLAP95Ms != nil {
			v := *h.SLAP95Ms
			c.SLAP95Ms = &v
		}
		if h.BudgetUSDMax != nil {
			v := *h.BudgetUSDMax
			c.BudgetUSDMax = &v
		}
		if h.AllowCloud != nil {
			v := *h.AllowCloud
			c.AllowCloud = &v
		}
		sp.PolicyHints = &c
	}
	return &out
}

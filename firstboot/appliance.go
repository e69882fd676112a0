package firstboot

import (
	"context"
	"errors"
	"fmt"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot/report"
	"github.com/omertaos/omertaos/hardening"
)

// ApplianceProber is the real Prober: appliance/probe with its embedded
// compatibility matrix.
type ApplianceProber struct {
	// Matrix judges the probe; nil means probe.DefaultMatrix().
	Matrix *probe.Matrix
	// Options are passed to probe.Run; Root, StateDir and Now are set from
	// ProbeOptions.
	Options probe.Options
}

// Probe runs the probe, stores it as the baseline that later drift is
// measured against, and returns its verdict for the report.
func (p ApplianceProber) Probe(ctx context.Context, o ProbeOptions, st *store.Store) (report.Probe, error) {
	opts := p.Options
	opts.Root = o.Root
	if o.StateDir != "" {
		opts.StateDir = o.StateDir
	}
	if o.Now != nil {
		opts.Now = o.Now
	}
	if st == nil {
		return report.Probe{}, errors.New("probe: no state database to store the baseline in")
	}
	// An attempt that a power cut stopped after storing its baseline
	// left the probe that later drift is measured against: judge that
	// one, so that the report and the baseline agree.
	b, err := probe.Baseline(ctx, st)
	if err != nil {
		return report.Probe{}, err
	}
	var res *probe.Result
	if b != nil && b.Baseline {
		res = b.Result
	} else {
		if res, err = probe.Run(ctx, opts); err != nil {
			return report.Probe{}, fmt.Errorf("probing %s: %w", o.Root, err)
		}
		if err := probe.Save(ctx, st, res, true); err != nil {
			return report.Probe{}, fmt.Errorf("storing the baseline probe: %w", err)
		}
	}
	m := p.Matrix
	if m == nil {
		m = probe.DefaultMatrix()
	}
	v := probe.Evaluate(res, m, o.Profile)
	out := report.Probe{Status: string(v.Status), Checks: []report.ProbeCheck{}}
	for _, c := range v.Checks {
		out.Checks = append(out.Checks, report.ProbeCheck{ID: c.ID, Status: string(c.Status), Reason: c.Reason, Measured: c.Measured, Required: c.Required})
	}
	return out, nil
}

// ApplianceHardener is the real Hardener: the hardening package.
type ApplianceHardener struct {
	// Runner runs live commands (nft, auditctl...); nil means os/exec.
	Runner hardening.Runner
}

func (h ApplianceHardener) options(o HardenOptions) hardening.Options {
	return hardening.Options{Root: o.Root, Profile: o.Profile, Site: o.Site, Live: o.Live, Now: o.Now, Runner: h.Runner}
}

// Apply enforces the profile's controls.
func (h ApplianceHardener) Apply(ctx context.Context, o HardenOptions) ([]string, error) {
	a, err := hardening.Apply(ctx, h.options(o))
	return a.Changed, err
}

// Check reads every control back and turns the results into report
// records.
func (h ApplianceHardener) Check(ctx context.Context, o HardenOptions) ([]report.Record, error) {
	res, err := hardening.Check(ctx, h.options(o))
	if err != nil {
		return nil, err
	}
	return Records(res), nil
}

// Records converts hardening results into report records.
func Records(res []hardening.Result) []report.Record {
	out := make([]report.Record, 0, len(res))
	for _, r := range res {
		rec := report.Record{
			ID: r.ID, Title: r.Title, Expected: r.Expected, Actual: r.Actual,
			Result: report.Outcome(r.Result), Waiver: r.Waiver, Time: r.Time,
			References: []report.Reference{}, Evidence: []report.Evidence{},
		}
		for _, ref := range r.References {
			rec.References = append(rec.References, report.Reference{Scheme: ref.Scheme, ID: ref.ID})
		}
		for _, e := range r.Evidence {
			rec.Evidence = append(rec.Evidence, report.Evidence{Source: e.Source, SHA256: e.SHA256, Excerpt: e.Excerpt})
		}
		out = append(out, rec)
	}
	return out
}

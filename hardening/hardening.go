// Package hardening holds the appliance's hardening controls: each one is
// data (an ID, a title, benchmark references, the profiles it belongs to)
// plus code that applies it to a root directory and reads the real value
// back.
//
// Everything works against Options.Root, so the same controls harden a live
// system ("/"), a mounted image tree at build time, and a t.TempDir() in
// tests. Writes that reach the running kernel (/proc/sys, nft, auditctl,
// module unloading, remounts) happen only when Options.Live is set.
package hardening

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// Outcome is a control's result in the XCCDF vocabulary.
type Outcome string

// The XCCDF results a control can have.
const (
	Pass          Outcome = "pass"
	Fail          Outcome = "fail"
	Error         Outcome = "error"
	NotApplicable Outcome = "notapplicable"
	NotChecked    Outcome = "notchecked"
	Informational Outcome = "informational"
	Fixed         Outcome = "fixed"
)

// Drift reports whether o means the control is not in its hardened state.
// notapplicable, notchecked and informational (waivers) are not drift.
func (o Outcome) Drift() bool { return o == Fail || o == Error }

// Reference points a control at a benchmark item.
type Reference struct {
	Scheme string `json:"scheme"` // "CIS-Debian12", "KSPP", "DISA-SRG"
	ID     string `json:"id"`
}

// Evidence is one thing a check read: a file (its path inside the root) or a
// command, with the SHA-256 of the bytes read.
type Evidence struct {
	Source  string `json:"source"`
	SHA256  string `json:"sha256"`
	Excerpt string `json:"excerpt,omitempty"`
}

// Result is the outcome of one control.
type Result struct {
	ID         string      `json:"id"`
	Title      string      `json:"title"`
	References []Reference `json:"references"`
	Expected   string      `json:"expected"`
	Actual     string      `json:"actual"`
	Result     Outcome     `json:"result"`
	Waiver     string      `json:"waiver,omitempty"`
	Evidence   []Evidence  `json:"evidence"`
	Time       time.Time   `json:"time"`
}

// Runner runs a command and returns its combined output. Live steps use it
// for nft, auditctl, augenrules, mount and modprobe.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Options says where and how to harden.
type Options struct {
	// Root is "/" on a live system, an image tree or a temp dir otherwise.
	// Symlinks in it resolve inside it (see appliance/rootfs): no control
	// reads, writes, chmods or chowns anything outside the root.
	Root    string
	Profile config.Profile
	// Site supplies ssh.enabled (admits port 22) and console.port.
	Site config.Config
	// Live also writes the running kernel's state (/proc/sys, nftables,
	// audit rules, mounts) and reads it back. It requires Root "/" unless
	// Runner is set, which tests use to drive the live step against a
	// fake /proc under a temp root without touching the host.
	Live bool
	Now  func() time.Time
	// Runner runs commands for live steps; nil runs them with os/exec.
	Runner Runner

	fs rootfs.Root // Root, opened by normalise
}

// Applied is what Apply did: the files it wrote or whose metadata it
// changed (paths inside the root), and every control's result read back
// afterwards.
type Applied struct {
	Changed []string
	Results []Result
}

func (o *Options) normalise() error {
	if o.Root == "" {
		o.Root = "/"
	}
	root, err := rootfs.New(o.Root)
	if err != nil {
		return fmt.Errorf("hardening: %w", err)
	}
	o.fs, o.Root = root, root.Dir()
	if o.Profile == "" {
		o.Profile = o.Site.Profile
	}
	if o.Profile == "" {
		o.Profile = config.ProfileUser
	}
	if _, err := config.ParseProfile(string(o.Profile)); err != nil {
		return fmt.Errorf("hardening profile: %w", err)
	}
	if o.Site.Console.Port == 0 {
		o.Site.Console = config.Default().Console
	}
	if o.Live && o.Root != "/" && o.Runner == nil {
		return errors.New("hardening: live mode writes the running kernel and needs root \"/\"")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Runner == nil {
		o.Runner = execRunner
	}
	return nil
}

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Controls returns the controls of profile p, in a stable order. Waived
// controls are included: they are reported, never silently dropped.
func Controls(p config.Profile) []Control {
	var out []Control
	for _, c := range catalog() {
		if c.In(p) {
			out = append(out, c)
		}
	}
	return out
}

// Check reads every control of the profile back and changes nothing.
func Check(ctx context.Context, opts Options) ([]Result, error) {
	if err := opts.normalise(); err != nil {
		return nil, err
	}
	e := newEnv(ctx, opts)
	ctrls := Controls(opts.Profile)
	results := make([]Result, 0, len(ctrls))
	for _, c := range ctrls {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		results = append(results, c.run(e))
	}
	return results, nil
}

// Apply hardens the root for the profile: it writes the files the controls
// own (only those whose content differs), edits the shared files they
// manage, runs the live step when asked, and reads every control back. A
// control that failed before and passes afterwards is reported as "fixed".
func Apply(ctx context.Context, opts Options) (Applied, error) {
	if err := opts.normalise(); err != nil {
		return Applied{}, err
	}
	e := newEnv(ctx, opts)
	ctrls := Controls(opts.Profile)

	before := make(map[string]Outcome, len(ctrls))
	for _, c := range ctrls {
		before[c.ID] = c.run(e).Result
	}

	var applied Applied
	changed, err := writeOwned(e, ctrls)
	applied.Changed = append(applied.Changed, changed...)
	if err != nil {
		return applied, err
	}
	// A control that cannot be applied (a read-only /boot, a module in
	// use) must not stop the others: its error goes into its result.
	applyErr := map[string]error{}
	for _, c := range ctrls {
		if c.Waiver != "" || c.apply == nil || !c.applicable(e) {
			continue
		}
		paths, err := c.apply(e)
		applied.Changed = append(applied.Changed, paths...)
		if err != nil {
			applyErr[c.ID] = err
		}
	}
	var liveErrs []error
	if opts.Live {
		for _, c := range ctrls {
			if c.Waiver != "" || c.live == nil || !c.applicable(e) {
				continue
			}
			if err := c.live(e); err != nil {
				applyErr[c.ID] = fmt.Errorf("on the running system: %w", err)
			}
		}
		for _, step := range liveGroupSteps {
			if err := step(e, ctrls); err != nil {
				liveErrs = append(liveErrs, err)
			}
		}
	}

	applied.Changed = dedupe(applied.Changed)
	e.resetCache()
	for _, c := range ctrls {
		r := c.run(e)
		if err := applyErr[c.ID]; err != nil && r.Result != Pass {
			r.Result = Error
			r.Actual = fmt.Sprintf("could not apply: %v; read back: %s", err, r.Actual)
		}
		if r.Result == Pass && before[c.ID].Drift() {
			r.Result = Fixed
		}
		applied.Results = append(applied.Results, r)
	}
	if len(liveErrs) > 0 {
		return applied, fmt.Errorf("applying to the running system: %w", errors.Join(liveErrs...))
	}
	return applied, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

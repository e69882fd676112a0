// Package firstboot turns a freshly flashed appliance into a hardened,
// identified machine with a signed report, without a keyboard, and survives a
// power cut at any moment.
//
// Run executes an ordered list of idempotent steps. Before and after each
// step it rewrites a journal atomically and fsyncs it, so that a rerun after
// a crash resumes at the first unfinished step and redoes at most the one
// that was running. Everything first boot writes lives under Options.Root, so
// the same code prepares a live system ("/"), an image tree, or a test's
// temporary directory.
//
// The Lynis audit is not one of the steps: it takes a quarter of an hour
// under emulation, and the setup token and the console do not wait for it.
// The report step seals the report with the audit deferred (or skipped, and
// why); RunAudit, which omerta-lynis.service runs once the console is up,
// runs Lynis and seals its result into the report as a signed addendum
// (see firstboot/report). It keeps its own journal, so an audit cut off by
// a power loss runs again on the next boot, and gives up, sealing the
// failure, after MaxAuditAttempts.
package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"path/filepath"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot/report"
)

// Paths on the appliance, relative to Options.Root. Each is defined here
// once; the state directory and the database are the configuration's
// (config.Default().Daemon.StateDir, config.StateFile), which omertad
// opens too.
var (
	StateDir       = config.Default().Daemon.StateDir
	StateDBPath    = config.Default().StateDBPath()
	Dir            = path.Join(StateDir, "firstboot")
	JournalPath    = path.Join(Dir, "journal.json")
	SiteBasePath   = path.Join(Dir, "site-base.json")
	ReportPath     = path.Join(Dir, "report.json")
	ReportHTMLPath = path.Join(Dir, "report.html")
	DonePath       = path.Join(Dir, "done")
	// AuditJournalPath and AuditDonePath are the deferred Lynis audit's
	// journal and done marker (see RunAudit).
	AuditJournalPath = path.Join(Dir, "lynis.json")
	AuditDonePath    = path.Join(Dir, "lynis-done")
	KeysDir          = path.Join(StateDir, "keys")
	SigningKeyPath   = path.Join(KeysDir, "signing.key")
	SigningPubPath   = path.Join(KeysDir, "signing.pub")
	TLSKeyPath       = path.Join(KeysDir, "tls.key")
	TLSCertPath      = path.Join(KeysDir, "tls.crt")
	TokenPath        = path.Join(StateDir, "setup-token")
	// ImageDigestPath is where the image build leaves the image's digest.
	ImageDigestPath = "/usr/lib/omerta/image-digest"
)

// Paths of the system being prepared that are not first boot's own.
const (
	IssuePath       = "/etc/issue.d/50-omerta.issue"
	MachineIDPath   = "/etc/machine-id"
	HostnamePath    = "/etc/hostname"
	LynisPath       = "/usr/sbin/lynis"
	AdminUser       = "omerta-admin"
	AdminKeysPath   = "/var/lib/omerta-admin/.ssh/authorized_keys"
	NetworkDir      = "/etc/systemd/network"
	TimesyncdDropIn = "/etc/systemd/timesyncd.conf.d/50-omerta.conf"
)

// storeSchemas are the tables first boot writes: its step table, and the
// probe baseline that ApplianceProber stores. omertad opens the same
// database with these and its own.
var storeSchemas = []store.Schema{Schema, probe.Schema}

// SiteConfigPaths are the layers of the site configuration, later winning:
// the image's file, then the places the ESP may be mounted.
var SiteConfigPaths = []string{config.DefaultPath, "/efi/omerta.yaml", "/boot/efi/omerta.yaml", "/boot/omerta.yaml"}

// Step names, in the order they run.
const (
	StepSite         = "site"
	StepIdentity     = "identity"
	StepKeys         = "keys"
	StepProbe        = "probe"
	StepHardenApply  = "harden-apply"
	StepHardenVerify = "harden-verify"
	StepToken        = "token"
	StepReport       = "report"
	StepDone         = "done"
)

// AuditStep names the Lynis audit in the step table, where it follows the
// steps: it runs after first boot (RunAudit), not as one of them, so that
// the setup token and the console do not wait for it.
const AuditStep = "lynis"

// Prober runs the hardware probe, stores it as the baseline and judges it
// against the profile.
type Prober interface {
	Probe(ctx context.Context, opts ProbeOptions, st *store.Store) (report.Probe, error)
}

// ProbeOptions says what to probe.
type ProbeOptions struct {
	Root string // where /proc and /sys are read; "/" in production
	// StateDir is the state directory of the system being prepared, whose
	// filesystem's free space the probe measures.
	StateDir string
	Profile  config.Profile
	Now      func() time.Time
}

// Hardener applies and reads back the hardening controls of a profile.
type Hardener interface {
	// Apply enforces the controls and returns the files it wrote.
	Apply(ctx context.Context, opts HardenOptions) (changed []string, err error)
	// Check reads every control back, changing nothing.
	Check(ctx context.Context, opts HardenOptions) ([]report.Record, error)
}

// HardenOptions mirrors hardening.Options.
type HardenOptions struct {
	Root    string
	Profile config.Profile
	Site    config.Config
	Live    bool
	Now     func() time.Time
}

// Options configure Run. Only Prober and Hardener are required.
type Options struct {
	// Root is the system to prepare; "" means "/".
	Root string
	// Profile, when set, overrides the site configuration's profile.
	Profile config.Profile
	// ProbeRoot is where the probe reads /proc and /sys; "" means "/".
	ProbeRoot string
	// Live also does what touches the running kernel and services
	// (sethostname, sysctls, nftables, restarting services). Needs Root "/".
	Live bool

	Prober   Prober
	Hardener Hardener

	// Out receives the console lines; nil discards them.
	Out io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Addrs lists the machine's addresses for the TLS certificate; nil
	// means the live interfaces' non-loopback, non-link-local addresses.
	Addrs func() ([]netip.Addr, error)
	// Lynis runs a Lynis audit writing its report to reportFile. nil means
	// the installed Lynis when Live, and no audit otherwise (Lynis audits
	// the running system, not a directory). Run only decides from it
	// whether the report defers the audit or skips it; RunAudit runs it.
	Lynis func(ctx context.Context, reportFile string) error
	// Notify sends an sd_notify state; nil means go-systemd's SdNotify.
	Notify func(state string) error
	// Exec runs a command for the live parts (networkctl, systemctl,
	// lynis); nil means os/exec.
	Exec func(ctx context.Context, name string, args ...string) error
	// Sethostname sets the kernel's hostname when Live; nil means the
	// sethostname(2) system call.
	Sethostname func(name string) error
	// ClockSynced reports whether the clock is NTP-synchronised, for the
	// report's clock_trusted; nil means adjtimex(2).
	ClockSynced func() bool
	// BootIDPath is read for the report's boot_id; "" means the running
	// kernel's /proc/sys/kernel/random/boot_id.
	BootIDPath string

	// Hook, when set, is called at named points of every step:
	// (step, "before") at the boundary before the step is marked running,
	// (step, "mid") inside the step with part of its work done, and
	// (step, "after") with the work done but not yet journalled. Only the
	// power-loss tests set it, to kill the process there.
	Hook func(step, point string)
}

// Result says how Run ended.
type Result struct {
	// AlreadyDone is true when the done marker existed and nothing ran.
	AlreadyDone bool
	Attempts    int
}

// StepError is returned when a step failed; the journal and the step table
// say so too, and the next run resumes at that step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("first boot step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Done reports whether first boot has completed on root.
func Done(root string) bool {
	r, err := rootfs.New(rootOr(root))
	if err != nil {
		return false
	}
	_, err = r.Stat(DonePath)
	return err == nil
}

func rootOr(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// Run performs, or resumes, the first boot of the system at opts.Root.
func Run(ctx context.Context, opts Options) (Result, error) {
	r, err := newRunner(opts)
	if err != nil {
		return Result{}, err
	}
	if Done(r.root) {
		// A power cut between writing the marker and journalling the done
		// step leaves the journal one step short: finish it (the marker
		// is kept as it is) rather than report a half-recorded success.
		j, err := readJournal(r.fs, JournalPath)
		if err != nil || j == nil || j.firstUnfinished() == len(j.Steps) {
			r.printf("first boot already complete (%s exists); nothing changed", DonePath)
			return Result{AlreadyDone: true}, nil
		}
	}
	return r.run(ctx)
}

func newRunner(opts Options) (*runner, error) {
	root := rootOr(opts.Root)
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("root %q: must be an absolute path", root)
	}
	if opts.Live && filepath.Clean(root) != "/" {
		return nil, fmt.Errorf("live mode changes the running kernel and services, so it needs root \"/\", not %q", root)
	}
	if opts.Profile != "" {
		if _, err := config.ParseProfile(string(opts.Profile)); err != nil {
			return nil, err
		}
	}
	if opts.Prober == nil || opts.Hardener == nil {
		return nil, errors.New("first boot needs a prober and a hardener")
	}
	fs, err := rootfs.New(root)
	if err != nil {
		return nil, fmt.Errorf("first boot: %w", err)
	}
	r := &runner{opts: opts, root: filepath.Clean(root), fs: fs}
	r.opts.setDefaults()
	if r.opts.Lynis == nil && r.opts.Live {
		r.opts.Lynis = lynisCommand(r.opts.Exec)
	}
	return r, nil
}

// setDefaults fills in the live system's clock, commands and files.
func (o *Options) setDefaults() {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProbeRoot == "" {
		o.ProbeRoot = "/"
	}
	if o.Addrs == nil {
		o.Addrs = liveAddrs
	}
	if o.Notify == nil {
		o.Notify = sdNotify
	}
	if o.Exec == nil {
		o.Exec = execCommand
	}
	if o.Sethostname == nil {
		o.Sethostname = sethostname
	}
	if o.ClockSynced == nil {
		o.ClockSynced = clockSynced
	}
	if o.BootIDPath == "" {
		o.BootIDPath = "/proc/sys/kernel/random/boot_id"
	}
}

// runner is one run of first boot.
type runner struct {
	opts Options
	root string
	// fs is root: every file first boot reads or writes is resolved
	// inside it, so a link in an image tree never leads to the host.
	fs    rootfs.Root
	j     *Journal
	st    *store.Store
	steps []step
	cur   string
	// auditExtra is added to the detail of the current step's audit entry.
	auditExtra map[string]any
}

type step struct {
	name string
	// run does the work; it returns the data to journal, or a non-empty
	// skip reason, or an error.
	run func(ctx context.Context) (data any, skip string, err error)
}

// path is p inside the root as a path on this machine, its directories
// resolved inside the root and its last component kept; see under.
func (r *runner) path(p string) string { return joinIn(r.fs, p) }

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.opts.Out, "omerta-firstboot: "+format+"\n", args...)
}

// mid marks the middle of the current step for the power-loss tests.
func (r *runner) mid() {
	if r.opts.Hook != nil {
		r.opts.Hook(r.cur, "mid")
	}
}

func (r *runner) hook(step, point string) {
	if r.opts.Hook != nil {
		r.opts.Hook(step, point)
	}
}

func (r *runner) notify(format string, args ...any) {
	// A failed notification must not fail first boot: outside systemd
	// there is nobody to tell.
	_ = r.opts.Notify("STATUS=" + fmt.Sprintf(format, args...))
}

func (r *runner) stepList() []step {
	return []step{
		{StepSite, r.stepSite},
		{StepIdentity, r.stepIdentity},
		{StepKeys, r.stepKeys},
		{StepProbe, r.stepProbe},
		{StepHardenApply, r.stepHardenApply},
		{StepHardenVerify, r.stepHardenVerify},
		{StepToken, r.stepToken},
		{StepReport, r.stepReport},
		{StepDone, r.stepDone},
	}
}

// StepNames lists the steps in order.
func StepNames() []string {
	var r runner
	var names []string
	for _, s := range r.stepList() {
		names = append(names, s.name)
	}
	return names
}

func (r *runner) run(ctx context.Context) (Result, error) {
	r.steps = r.stepList()
	if err := r.prepareDirs(); err != nil {
		return Result{}, err
	}
	if err := r.openJournal(); err != nil {
		return Result{}, err
	}
	res := Result{Attempts: r.j.Attempts}
	st, err := store.Open(ctx, resolvedIn(r.fs, StateDBPath), store.WithSchemas(storeSchemas...))
	if err != nil {
		return res, err
	}
	defer st.Close()
	r.st = st
	if err := r.syncTable(ctx); err != nil {
		return res, err
	}
	for i, s := range r.steps {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("first boot interrupted before step %s: %w", s.name, err)
		}
		if r.j.step(s.name).finished() {
			continue
		}
		if err := r.runStep(ctx, i, s); err != nil {
			return res, err
		}
	}
	r.printf("first boot complete")
	if err := r.printBanner(); err != nil {
		return res, err
	}
	if la, err := r.lynisDecision(); err == nil && la.Status == report.AuditSkipped {
		r.printf("the Lynis audit is skipped (%s)", la.Reason)
	} else {
		r.printf("the Lynis audit runs next, in the background; its result is sealed into the report when it ends")
	}
	r.notify("First boot complete")
	return res, nil
}

// prepareDirs creates first boot's directories and removes what writes
// that a power cut interrupted left in them.
func (r *runner) prepareDirs() error {
	for _, d := range []string{StateDir, Dir} {
		if err := r.fs.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := r.fs.MkdirAll(KeysDir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{StateDir, Dir, KeysDir, path.Dir(IssuePath)} {
		if err := r.fs.Sweep(d); err != nil {
			return err
		}
	}
	return nil
}

// openJournal reads the journal (or starts one), counts this attempt and
// makes the count durable before any step runs.
func (r *runner) openJournal() error {
	names := StepNames()
	j, err := readJournal(r.fs, JournalPath)
	if err != nil {
		return fmt.Errorf("%w (move it aside to start first boot again)", err)
	}
	fresh := j == nil
	if fresh {
		j = newJournal(names)
		j.StartedAt = r.opts.Now().UTC()
	} else if err := j.reconcile(names); err != nil {
		return fmt.Errorf("journal %s: %w", JournalPath, err)
	}
	r.j = j
	if err := r.checkProfile(); err != nil {
		return err
	}
	j.Attempts++
	if err := j.writeIn(r.fs, JournalPath); err != nil {
		return err
	}
	start := j.firstUnfinished()
	if fresh || start == 0 && j.Steps[0].Attempts == 0 {
		r.printf("attempt %d starting (from the beginning)", j.Attempts)
	} else if start < len(names) {
		r.printf("attempt %d starting (resuming at %s)", j.Attempts, names[start])
	}
	r.notify("First boot: attempt %d", j.Attempts)
	return nil
}

// runStep runs step i, journalling its start and its end; a failed step
// is a *StepError, and the next run resumes there.
func (r *runner) runStep(ctx context.Context, i int, s step) error {
	n := len(r.steps)
	state := r.j.step(s.name)
	r.hook(s.name, "before")
	r.cur = s.name
	state.Status = StatusRunning
	state.Attempts++
	state.StartedAt = r.opts.Now().UTC()
	state.FinishedAt = time.Time{}
	state.Error, state.Reason = "", ""
	if err := r.commit(ctx, state, ""); err != nil {
		return err
	}
	r.printf("step %d/%d %s: running", i+1, n, s.name)
	r.notify("First boot: step %d/%d %s", i+1, n, s.name)

	data, skip, runErr := s.run(ctx)
	if runErr == nil {
		r.hook(s.name, "after")
	}
	if err := r.finishStep(state, data, skip, runErr); err != nil {
		return err
	}
	if err := r.commit(ctx, state, s.name); err != nil {
		return err
	}
	switch state.Status {
	case StatusFailed:
		r.printf("step %d/%d %s: failed: %s", i+1, n, s.name, state.Error)
		r.notify("First boot: step %s failed: %s", s.name, state.Error)
		return &StepError{Step: s.name, Err: runErr}
	case StatusSkipped:
		r.printf("step %d/%d %s: skipped (%s)", i+1, n, s.name, skip)
	default:
		r.printf("step %d/%d %s: done in %s", i+1, n, s.name, state.FinishedAt.Sub(state.StartedAt).Round(time.Millisecond))
	}
	return nil
}

// finishStep records how a step's run ended in its journal state.
func (r *runner) finishStep(state *StepState, data any, skip string, runErr error) error {
	state.FinishedAt = r.opts.Now().UTC()
	switch {
	case runErr != nil:
		state.Status, state.Error = StatusFailed, oneLine(runErr.Error())
	case skip != "":
		state.Status, state.Reason = StatusSkipped, skip
	default:
		state.Status = StatusDone
		if data != nil {
			raw, err := marshalData(data)
			if err != nil {
				return fmt.Errorf("step %s: %w", state.Name, err)
			}
			state.Data = raw
		}
	}
	return nil
}

// checkProfile refuses to resume under a different --profile than the one
// the finished site step chose: half the machine hardened one way and half
// another is worse than a clear error.
func (r *runner) checkProfile() error {
	if r.opts.Profile == "" {
		return nil
	}
	var sd siteData
	ok, err := r.j.decode(StepSite, &sd)
	if err != nil || !ok {
		return err
	}
	if sd.Config.Profile != r.opts.Profile {
		return fmt.Errorf("--profile %s: first boot began with profile %s and resumes with it; remove %s to start again with another", r.opts.Profile, sd.Config.Profile, JournalPath)
	}
	return nil
}

// commit makes a step boundary durable: the journal first (it is what a
// rerun trusts), then the step table and the audit log for the console.
func (r *runner) commit(ctx context.Context, s *StepState, audit string) error {
	if err := r.j.writeIn(r.fs, JournalPath); err != nil {
		return err
	}
	return r.record(ctx, s, audit != "")
}

func oneLine(s string) string {
	out := []rune{}
	for _, c := range s {
		if c == '\n' || c == '\r' {
			c = ' '
		}
		out = append(out, c)
	}
	return string(out)
}

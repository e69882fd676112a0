// Command e2e is the end-to-end test of the OMERTAOS image (make e2e).
//
// It boots copies of out/omertaos.raw under QEMU with a site configuration
// written onto each copy's ESP with mtools, reads the serial console, talks
// to the guest only through QEMU's forwarded loopback ports, and checks:
//
//  1. first boot finishes within a bounded time, printing its step lines, the
//     console URL, the TLS fingerprint and the setup token;
//  2. over SSH: omertad and containerd are active, `omerta probe` runs,
//     `omerta harden --check` reports zero drift;
//  3. the signed report verifies on the host with `omerta report verify`, and
//     its profile and site settings are those dropped on the ESP;
//  4. the Lynis hardening index (target >= 80) and warnings (target none);
//  5. `systemd-analyze security` exposure of our units;
//  6. power loss in the middle of first boot, then a second boot that
//     finishes, a report counting two attempts, and no setup token printed
//     before hardening was verified;
//  7. a bad site configuration: first boot completes with the defaults and
//     the report names the bad field;
//  8. /var grew into the rest of a disk larger than the image;
//  9. a reboot with the sample agent deployed: first boot does not run
//     again, the agent is back on its generation, omertad's database and
//     containerd agree, the audit chain verifies and the report is
//     unchanged.
//
// Scenarios 6 and 7, then the reboot scenario (a gVisor agent, the model
// gateway's agents and step 9 on a guest of their own, with Lynis off),
// boot one after the other beside the main scenario, from the start.
// It prints the figures and writes them, with every check, to -out.
//
// With -bench it runs no checks: it measures the image's power-on to
// console ready against a plain image's multi-user.target instead
// (make e2e-bench; see bench.go).
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

type options struct {
	top, image, omerta, out, work string
	firstbootTimeout              time.Duration
	auditTimeout                  time.Duration
	skipPowerLoss, skipBadConfig  bool
	skipReboot                    bool
	keep                          bool
	bench                         benchOptions
}

// check is one pass/fail item of the run.
type check struct {
	Scenario string `json:"scenario"`
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Detail   string `json:"detail,omitempty"`
}

type results struct {
	Image struct {
		BuildSeconds    float64 `json:"build_seconds"`
		FileBytes       int64   `json:"file_bytes"`
		UsedBytes       int64   `json:"used_bytes"`
		CompressedBytes int64   `json:"compressed_bytes"`
	} `json:"image"`
	PowerOnToFirstbootDoneSeconds float64 `json:"power_on_to_firstboot_done_seconds"`
	PowerOnToFirstbootStartSecs   float64 `json:"power_on_to_firstboot_start_seconds"`
	FirstbootSeconds              float64 `json:"firstboot_seconds"`
	PowerOnToConsoleReadySecs     float64 `json:"power_on_to_console_ready_seconds"`
	PowerOnToReportSealedSecs     float64 `json:"power_on_to_report_sealed_seconds"`
	LynisSeconds                  float64 `json:"lynis_seconds"`
	DeployToRunningSecs           float64 `json:"sample_agent_deploy_to_running_seconds"`
	RebootToServicesSecs          float64 `json:"reboot_to_services_active_seconds"`
	// Boot is where the main scenario's boots spent their time: "first"
	// (milestones from the serial console, systemd's account once the
	// audit ended) and "reboot".
	Boot           map[string]bootProfile `json:"boot_profile"`
	FirstbootSteps map[string]string      `json:"firstboot_steps"`
	LynisIndex     *int                   `json:"lynis_index"`
	LynisWarnings  []string               `json:"lynis_warnings"`
	// LynisSlowest are the audit's longest tests, from its log.
	LynisSlowest []lynisTest        `json:"lynis_slowest_tests"`
	Exposure     map[string]float64 `json:"exposure"`
	// NVIDIA is the driver extension on a guest without a GPU: left
	// unmerged at boot, then merged by force.
	NVIDIA       nvidiaResult `json:"nvidia_extension"`
	Accelerator  string       `json:"accelerator"`
	Notes        []string     `json:"notes"`
	Checks       []check      `json:"checks"`
	Passed       int          `json:"passed"`
	Failed       int          `json:"failed"`
	TotalSeconds float64      `json:"total_seconds"`
}

type run struct {
	opts options

	// mu guards res.Checks and res.Notes, which the main scenario and the
	// others append to at the same time; every other field of res is the
	// main scenario's alone.
	mu  sync.Mutex
	res results
}

func (r *run) check(scenario, name string, pass bool, format string, args ...any) bool {
	c := check{Scenario: scenario, Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Checks = append(r.res.Checks, c)
	mark := "PASS"
	if !pass {
		mark = "FAIL"
	}
	fmt.Printf("e2e: %s %s: %s", mark, scenario, name)
	if c.Detail != "" {
		fmt.Printf(" (%s)", c.Detail)
	}
	fmt.Println()
	return pass
}

func (r *run) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Notes = append(r.res.Notes, s)
	fmt.Println("e2e: note:", s)
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var o options
	top, _ := os.Getwd()
	flag.StringVar(&o.top, "top", top, "repository root (scripts/qemu.sh lives under it)")
	flag.StringVar(&o.image, "image", "out/omertaos.raw", "the image under test")
	flag.StringVar(&o.omerta, "omerta", "bin/omerta", "host omerta binary, for `omerta report verify`")
	flag.StringVar(&o.out, "out", "out/e2e-results.json", "where to write the figures and checks")
	flag.StringVar(&o.work, "work", "out/e2e", "working directory (disk copies, serial logs, the report)")
	flag.DurationVar(&o.firstbootTimeout, "firstboot-timeout", 20*time.Minute, "bound on power-on to first boot done (Lynis runs after it)")
	flag.DurationVar(&o.auditTimeout, "audit-timeout", 75*time.Minute, "bound on power-on to the Lynis audit sealed (Lynis took 33-39 min on the 2-core CI machine under TCG with one agent running; 38m46s here alone, over 48 min here with a runc and a gVisor agent running and other work on the host)")
	flag.BoolVar(&o.skipPowerLoss, "skip-power-loss", false, "skip scenario 6 (power loss)")
	flag.BoolVar(&o.skipBadConfig, "skip-bad-config", false, "skip scenario 7 (bad site configuration)")
	flag.BoolVar(&o.skipReboot, "skip-reboot", false, "skip the reboot scenario (the sandboxed agent, the model gateway, scenario 9)")
	flag.BoolVar(&o.keep, "keep", false, "keep the disk copies")
	benchFlags(&o)
	flag.Parse()
	if o.bench.extension && !o.bench.on {
		return errors.New("-extension: only with -bench")
	}
	if o.bench.on {
		return runBench(o)
	}

	start := time.Now()
	r := &run{opts: o}
	r.res.Exposure = map[string]float64{}
	r.res.Boot = map[string]bootProfile{}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	if err := r.readBuildInfo(); err != nil {
		r.note("no build figures: %v", err)
	}

	// Ctrl-C or SIGTERM ends the run: waits return, deferred kills stop the
	// guests, and the figures so far are still written.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r.runScenarios(ctx, start, scenario{"main", false, r.mainScenario}, []scenario{
		{"power-loss", o.skipPowerLoss, r.powerLossScenario},
		{"bad-config", o.skipBadConfig, r.badConfigScenario},
		{"reboot", o.skipReboot, r.rebootScenario},
	})

	for _, c := range r.res.Checks {
		if c.Pass {
			r.res.Passed++
		} else {
			r.res.Failed++
		}
	}
	// scripts/qemu.sh decides the accelerator on its first boot on a host.
	if b, err := os.ReadFile(filepath.Join(o.top, ".cache/qemu-accel")); err == nil {
		r.res.Accelerator = strings.TrimSpace(lastLine(string(b)))
	}
	r.res.TotalSeconds = time.Since(start).Seconds()
	data, _ := json.MarshalIndent(r.res, "", "  ")
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	r.printFigures()
	fmt.Printf("e2e: %d passed, %d failed\n", r.res.Passed, r.res.Failed)
	// CI keeps only the tail of the output, so the failures are repeated
	// last, after the figures, where a truncated log still shows them.
	for _, c := range r.res.Checks {
		if !c.Pass {
			fmt.Printf("e2e: FAILED %s: %s (%s)\n", c.Scenario, c.Name, c.Detail)
		}
	}
	for _, n := range r.res.Notes {
		fmt.Println("e2e: note:", n)
	}
	if r.res.Failed > 0 {
		return fmt.Errorf("%d checks failed; serial logs under %s, figures in %s", r.res.Failed, o.work, o.out)
	}
	return nil
}

type scenario struct {
	name string
	skip bool
	fn   func(context.Context) error
}

// runScenarios runs the main scenario and, beside it from the start, the
// others one after the other. Under emulation each guest keeps one core
// busy: the main one for its first boot and then its Lynis audit, the
// others for theirs, which together took longer than the main scenario
// from its audit on (here 15 min against 12 at stop 17's rehearsal), so
// they no longer wait for the audit to begin.
func (r *run) runScenarios(ctx context.Context, start time.Time, main scenario, others []scenario) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range others {
			r.runScenario(ctx, start, s)
		}
	}()
	r.runScenario(ctx, start, main)
	<-done
}

func (r *run) runScenario(ctx context.Context, start time.Time, s scenario) {
	if ctx.Err() != nil {
		r.check(s.name, "scenario ran", false, "interrupted")
		return
	}
	if s.skip {
		r.note("scenario %s skipped by flag", s.name)
		return
	}
	fmt.Printf("e2e: scenario %s (%s elapsed)\n", s.name, time.Since(start).Round(time.Second))
	begun := time.Now()
	if err := s.fn(ctx); err != nil {
		r.check(s.name, "scenario ran to the end", false, "%v", err)
	}
	r.note("scenario %s took %s (from %s to %s after the start)", s.name, time.Since(begun).Round(time.Second),
		begun.Sub(start).Round(time.Second), time.Since(start).Round(time.Second))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (r *run) readBuildInfo() error {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(r.opts.image), "build-info.json"))
	if err != nil {
		return err
	}
	var bi struct {
		BuildSeconds    float64 `json:"build_seconds"`
		ImageBytes      int64   `json:"image_bytes"`
		ImageUsedBytes  int64   `json:"image_used_bytes"`
		CompressedBytes int64   `json:"compressed_bytes"`
	}
	if err := json.Unmarshal(data, &bi); err != nil {
		return fmt.Errorf("build-info.json: %w", err)
	}
	r.res.Image.BuildSeconds = bi.BuildSeconds
	r.res.Image.FileBytes = bi.ImageBytes
	r.res.Image.UsedBytes = bi.ImageUsedBytes
	r.res.Image.CompressedBytes = bi.CompressedBytes
	return nil
}

func (r *run) printFigures() {
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	fmt.Println("e2e: ---- figures ----")
	fmt.Printf("e2e: image build:                  %.1f s\n", r.res.Image.BuildSeconds)
	fmt.Printf("e2e: image size:                   %s file, %s used, %s zstd\n", mib(r.res.Image.FileBytes), mib(r.res.Image.UsedBytes), mib(r.res.Image.CompressedBytes))
	fmt.Printf("e2e: accelerator:                  %s\n", r.res.Accelerator)
	fmt.Printf("e2e: power-on to first boot start: %.1f s\n", r.res.PowerOnToFirstbootStartSecs)
	fmt.Printf("e2e: power-on to first boot done:  %.1f s\n", r.res.PowerOnToFirstbootDoneSeconds)
	fmt.Printf("e2e: first-boot duration:          %.1f s\n", r.res.FirstbootSeconds)
	fmt.Printf("e2e: power-on to console ready:    %.1f s\n", r.res.PowerOnToConsoleReadySecs)
	fmt.Printf("e2e: power-on to report sealed:    %.1f s (Lynis %.1f s, after the console)\n", r.res.PowerOnToReportSealedSecs, r.res.LynisSeconds)
	fmt.Printf("e2e: sample agent deploy to running: %.1f s\n", r.res.DeployToRunningSecs)
	fmt.Printf("e2e: reboot to services active:  %.1f s\n", r.res.RebootToServicesSecs)
	for _, k := range sortedKeys(r.res.FirstbootSteps) {
		fmt.Printf("e2e:   step %-14s %s\n", k, r.res.FirstbootSteps[k])
	}
	if r.res.LynisIndex != nil {
		fmt.Printf("e2e: Lynis hardening index:        %d (%d warnings)\n", *r.res.LynisIndex, len(r.res.LynisWarnings))
		for _, w := range r.res.LynisWarnings {
			fmt.Printf("e2e:   warning: %s\n", w)
		}
	} else {
		fmt.Printf("e2e: Lynis hardening index:        (not in the report)\n")
	}
	for _, k := range sortedKeys(r.res.Boot) {
		b := r.res.Boot[k]
		fmt.Printf("e2e: %s boot: %s%s\n", k, b.Time, b.Error)
		for _, m := range milestones {
			if at, ok := b.Milestones[m.name]; ok {
				fmt.Printf("e2e:   %-16s %7.1f s\n", m.name, at)
			}
		}
		for _, l := range b.Blame {
			fmt.Printf("e2e:   blame %s\n", l)
		}
	}
	for _, k := range sortedKeys(r.res.Exposure) {
		fmt.Printf("e2e: exposure %-22s %.1f\n", k+":", r.res.Exposure[k])
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// boot starts the VM called name on disk, its serial console logged to
// <work>/<name>-serial.log.
func (r *run) boot(name, disk string) (*vm, error) {
	return boot(r.opts.top, name, disk, filepath.Join(r.opts.work, name+"-serial.log"))
}

// prepareDisk copies the image and drops ESP files onto the copy.
func (r *run) prepareDisk(name string, esp map[string][]byte) (string, error) {
	disk := filepath.Join(r.opts.work, name+".raw")
	os.Remove(disk)
	if err := copySparse(r.opts.image, disk); err != nil {
		return "", err
	}
	if err := putOnESP(disk, esp); err != nil {
		return "", err
	}
	return disk, nil
}

func (r *run) cleanupDisk(disk string) {
	if !r.opts.keep {
		os.Remove(disk)
	}
}

var (
	reAttempt  = regexp.MustCompile(`omerta-firstboot: attempt (\d+) starting \((.*)\)`)
	reStep     = regexp.MustCompile(`omerta-firstboot: step (\d+)/(\d+) ([a-z-]+): (running|done in (\S+)|skipped.*|failed: .*)`)
	reComplete = regexp.MustCompile(`omerta-firstboot: first boot complete`)
	reReady    = regexp.MustCompile(`OMERTAOS is ready\.`)
	reConsole  = regexp.MustCompile(`\bConsole:\s+(https://\S+)`)
	reTLS      = regexp.MustCompile(`TLS fingerprint:\s+(SHA256:(?:[0-9A-F]{2}:){31}[0-9A-F]{2})\s*$`)
	reToken    = regexp.MustCompile(`Setup token:\s+([a-z2-7]{32})\s+\(single use, valid until (\S+)\)`)
	reTokenAny = regexp.MustCompile(`Setup token:`)
	reKey      = regexp.MustCompile(`Report key:\s+(SHA256:[0-9a-f]{64})\s*$`)
	reSiteErr  = regexp.MustCompile(`omerta-firstboot: site configuration (\S+): (.*)`)
	// omerta-lynis.service's last word: sealed, sealed as failed, skipped.
	reAuditEnd    = regexp.MustCompile(`omerta-lynis: audit (sealed|skipped)`)
	reAuditSealed = regexp.MustCompile(`omerta-lynis: audit sealed: hardening index (\d+)`)
)

// banner is what the console printed once first boot finished.
type banner struct {
	URL, TLS, Token, Expires, ReportKey string
	DoneAt                              time.Duration
	StartAt                             time.Duration
}

// waitFirstboot follows the console from line from until first boot is
// complete and the banner is printed.
func (r *run) waitFirstboot(ctx context.Context, scenario string, v *vm, from int) (banner, int, error) {
	var b banner
	i, l, err := v.waitLine(ctx, from, reAttempt)
	if err != nil {
		return b, i, err
	}
	b.StartAt = l.At
	fmt.Printf("e2e: %s: [%6.1fs] %s\n", scenario, l.At.Seconds(), strings.TrimSpace(l.Text))
	// Echo step lines as they come, so a person watching sees progress.
	for {
		j, l, err := v.waitLine(ctx, i+1, regexp.MustCompile(reStep.String()+`|`+reComplete.String()+`|omerta-firstboot: .*failed|Failed to start omerta-firstboot`))
		if err != nil {
			return b, j, err
		}
		i = j
		fmt.Printf("e2e: %s: [%6.1fs] %s\n", scenario, l.At.Seconds(), strings.TrimSpace(l.Text))
		if reComplete.MatchString(l.Text) {
			b.DoneAt = l.At
			break
		}
		if strings.Contains(l.Text, "Failed to start omerta-firstboot") {
			return b, i, errors.New("omerta-firstboot.service failed")
		}
	}
	for _, p := range []struct {
		re  *regexp.Regexp
		dst []*string
	}{
		{reReady, nil},
		{reConsole, []*string{&b.URL}},
		{reTLS, []*string{&b.TLS}},
		{reToken, []*string{&b.Token, &b.Expires}},
		{reKey, []*string{&b.ReportKey}},
	} {
		bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		j, l, err := v.waitLine(bctx, i+1, p.re)
		cancel()
		if err != nil {
			return b, i, fmt.Errorf("banner: %w", err)
		}
		i = j
		m := p.re.FindStringSubmatch(l.Text)
		for k, d := range p.dst {
			*d = m[k+1]
		}
	}
	return b, i, nil
}

// stepTimes collects "done in" durations of the step lines.
func stepTimes(lines []line) map[string]string {
	out := map[string]string{}
	for _, l := range lines {
		if m := reStep.FindStringSubmatch(l.Text); m != nil && m[5] != "" {
			out[m[3]] = m[5]
		}
	}
	return out
}

// siteConfig renders an omerta.yaml.
func siteConfig(profile, hostname string, sshKey string, lynis *bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the OMERTAOS e2e test\nprofile: %s\n", profile)
	if hostname != "" {
		fmt.Fprintf(&b, "hostname: %s\n", hostname)
	}
	if sshKey != "" {
		fmt.Fprintf(&b, "ssh:\n  enabled: true\n  authorized_keys:\n    - %q\n", sshKey)
	}
	if lynis != nil {
		fmt.Fprintf(&b, "firstboot:\n  lynis: %t\n", *lynis)
	}
	return []byte(b.String())
}

func boolp(b bool) *bool { return &b }

// reportHeader is the part of the first-boot report the test reads; the
// signature and chain are checked by `omerta report verify`.
type reportHeader struct {
	Header struct {
		SchemaVersion string `json:"schema_version"`
		Hostname      string `json:"hostname"`
		Profile       string `json:"profile"`
		Attempts      int    `json:"attempts"`
		StartedAt     time.Time
		FinishedAt    time.Time `json:"finished_at"`
		LynisAudit    struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"lynis_audit"`
		Site struct {
			Sources []struct {
				Path    string `json:"path"`
				Present bool   `json:"present"`
				SHA256  string `json:"sha256"`
				Error   string `json:"error"`
			} `json:"sources"`
			Problems []string `json:"problems"`
		} `json:"site"`
		Summary map[string]int `json:"summary"`
	} `json:"header"`
	Addenda   []addendum `json:"addenda"`
	Signature struct {
		KeyFingerprint string `json:"key_fingerprint"`
	} `json:"signature"`
}

// addendum is a result sealed into the report after first boot: today the
// Lynis audit, which omerta-lynis.service runs once the console is up.
type addendum struct {
	Kind       string    `json:"kind"`
	Status     string    `json:"status"`
	Error      string    `json:"error"`
	Attempts   int       `json:"attempts"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Lynis      *struct {
		Version  string   `json:"version"`
		Index    int      `json:"index"`
		Warnings []string `json:"warnings"`
	} `json:"lynis"`
}

// lynisAddendum is the last Lynis addendum (a retried audit appends one).
func (h *reportHeader) lynisAddendum() *addendum {
	for i := len(h.Addenda) - 1; i >= 0; i-- {
		if h.Addenda[i].Kind == "lynis" {
			return &h.Addenda[i]
		}
	}
	return nil
}

// verifyReport saves data and runs the host's `omerta report verify` on it,
// pinned to the fingerprint the console printed.
func (r *run) verifyReport(scenario string, data []byte, fingerprint string) (*reportHeader, bool) {
	path := filepath.Join(r.opts.work, scenario+"-report.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		r.check(scenario, "report saved", false, "%v", err)
		return nil, false
	}
	args := []string{"report", "verify", path}
	if fingerprint != "" {
		args = append(args, "--fingerprint", fingerprint)
	}
	out, err := exec.Command(r.opts.omerta, args...).CombinedOutput()
	ok := r.check(scenario, "omerta report verify on the host", err == nil, "%s", lastLine(string(out)))
	var h reportHeader
	if err := json.Unmarshal(data, &h); err != nil {
		r.check(scenario, "report parses", false, "%v", err)
		return nil, false
	}
	return &h, ok
}

// ---- SSH ---------------------------------------------------------------

type sshClient struct{ c *ssh.Client }

func dialSSH(ctx context.Context, port int, signer ssh.Signer) (*sshClient, error) {
	cfg := &ssh.ClientConfig{
		User: "omerta-admin",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		// The host key is made on the guest's first boot and is unknown
		// beforehand; the connection goes to a loopback port forwarded to a
		// guest this test just booted.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         20 * time.Second,
	}
	var last error
	for ctx.Err() == nil {
		c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), cfg)
		if err == nil {
			return &sshClient{c}, nil
		}
		last = err
		time.Sleep(3 * time.Second)
	}
	return nil, fmt.Errorf("ssh to 127.0.0.1:%d: %v", port, last)
}

// run runs cmd and returns its standard output (standard error appended
// after it, so that messages are not lost) and exit status.
func (s *sshClient) run(cmd string) (string, int, error) {
	out, errOut, code, err := s.run2(cmd)
	return out + errOut, code, err
}

// run2 runs cmd and returns its standard output and standard error apart:
// for output that is parsed, such as a file or JSON.
func (s *sshClient) run2(cmd string) (string, string, int, error) {
	sess, err := s.c.NewSession()
	if err != nil {
		return "", "", -1, err
	}
	defer sess.Close()
	var stdout, stderr strings.Builder
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(cmd)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitStatus(), nil
	}
	if err != nil {
		return stdout.String(), stderr.String(), -1, err
	}
	return stdout.String(), stderr.String(), 0, nil
}

func newSSHKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " omerta-e2e-throwaway"
	return signer, pub, nil
}

var reExposure = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

package main

// The -bench mode (make e2e-bench): issue 13's boot-time target, "power-on
// to console ready under emulation at most 1.5x the time a plain trixie
// image with the same packages and no hardening takes to reach
// multi-user.target". It boots, alternately for -rounds rounds, a fresh
// copy of the plain image (scripts/plain-image.sh: mkosi.conf without our
// trees, scripts or kernel parameters) until its serial console says that
// multi-user.target was reached, and a fresh copy of the OMERTAOS image
// with the main scenario's site configuration on its ESP until the console
// answers SetupState over HTTPS pinned to the banner's fingerprint (the
// e2e's power-on to console ready, measured the same way). Both are timed
// from QEMU's start and get the same disk growth. Alternating rounds make
// a noisy host slow both alike; the figures are the medians.

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
)

// benchTarget is the bound on OMERTAOS console ready over plain
// multi-user, both under emulation.
const benchTarget = 1.5

// hardwareTarget is the bound on power-on to console ready on
// hardware, estimated as the hardware's plain multi-user time times the
// ratio measured here.
const hardwareTarget = 60.0

type benchOptions struct {
	on            bool
	plain         string
	rounds        int
	bootTimeout   time.Duration
	hardwarePlain float64
	extension     bool
}

// benchFlags adds the -bench mode's flags.
func benchFlags(o *options) {
	flag.BoolVar(&o.bench.on, "bench", false, "instead of the test, measure OMERTAOS console ready against a plain image's multi-user.target (make e2e-bench; -out defaults to out/e2e-bench.json, -work to out/e2e-bench)")
	flag.StringVar(&o.bench.plain, "plain", "out/plain.raw", "-bench: the plain image (scripts/plain-image.sh)")
	flag.IntVar(&o.bench.rounds, "rounds", 2, "-bench: rounds, each one boot of either image")
	flag.DurationVar(&o.bench.bootTimeout, "boot-timeout", 15*time.Minute, "-bench: bound on one boot")
	flag.BoolVar(&o.bench.extension, "extension", false, "-bench: instead of the plain image, boot OMERTAOS with its NVIDIA extension's unit masked on the kernel command line beside OMERTAOS as built, and compare console ready (issue 12's figure, make e2e-bench-extension)")
	flag.Float64Var(&o.bench.hardwarePlain, "hardware-plain-seconds", 0, "-bench: seconds the plain image takes to multi-user.target on the target hardware; when set, console ready there is estimated from the ratio against the issue's 60 s")
}

// benchBoot is one boot of either image.
type benchBoot struct {
	// Seconds from QEMU's start to the figure: multi-user.target for the
	// plain image, console ready for OMERTAOS.
	Seconds float64 `json:"seconds"`
	// MultiUserSeconds is when the console showed multi-user.target, for
	// either image (OMERTAOS reaches it after first boot, if it prints it).
	MultiUserSeconds float64 `json:"multi_user_seconds,omitempty"`
	// ExtensionUnitStarted: the serial console showed
	// omerta-nvidia-extension.service by console ready (OMERTAOS only).
	ExtensionUnitStarted bool               `json:"extension_unit_started,omitempty"`
	FirstbootStartSecs   float64            `json:"firstboot_start_seconds,omitempty"`
	FirstbootDoneSeconds float64            `json:"firstboot_done_seconds,omitempty"`
	Milestones           map[string]float64 `json:"milestones,omitempty"`
	SerialLog            string             `json:"serial_log"`
	// What else the host was doing: its load average as the boot started
	// and ended, and how many other QEMUs were running at the start.
	LoadBefore  string  `json:"loadavg_before"`
	LoadAfter   string  `json:"loadavg_after"`
	OtherQEMUs  int     `json:"other_qemus_at_start"`
	WallSeconds float64 `json:"wall_seconds"`
	Error       string  `json:"error,omitempty"`
}

type benchRound struct {
	Round                    int       `json:"round"`
	PlainMultiUserSeconds    float64   `json:"plain_multi_user_seconds"`
	OmertaosConsoleReadySecs float64   `json:"omertaos_console_ready_seconds"`
	Ratio                    float64   `json:"ratio,omitempty"`
	Plain                    benchBoot `json:"plain"`
	Omertaos                 benchBoot `json:"omertaos"`
	// With -extension, instead of Plain: OMERTAOS with its NVIDIA
	// extension's unit masked, and console ready as built over that.
	WithoutExtension *benchBoot `json:"without_extension,omitempty"`
	ExtensionRatio   float64    `json:"extension_ratio,omitempty"`
}

// benchImage is what the bench knows of an image: its unified kernel
// image's kernel release and command line, read off its ESP.
type benchImage struct {
	Path    string `json:"path"`
	Kernel  string `json:"kernel"`
	Cmdline string `json:"cmdline"`
	Error   string `json:"error,omitempty"`
}

type benchResults struct {
	Target float64 `json:"target_ratio"`
	// The medians over the rounds that measured both images, and their
	// ratio (the figure).
	MedianPlainMultiUserSecs     float64               `json:"median_plain_multi_user_seconds"`
	MedianOmertaosConsoleReady   float64               `json:"median_omertaos_console_ready_seconds"`
	Ratio                        float64               `json:"ratio"`
	Pass                         bool                  `json:"pass"`
	Verdict                      string                `json:"verdict"`
	MedianWithoutExtension       float64               `json:"median_without_extension_console_ready_seconds,omitempty"`
	ExtensionRatio               float64               `json:"extension_ratio,omitempty"`
	HardwarePlainSeconds         float64               `json:"hardware_plain_multi_user_seconds,omitempty"`
	HardwareConsoleReadyEstimate float64               `json:"hardware_console_ready_estimate_seconds,omitempty"`
	Rounds                       []benchRound          `json:"rounds"`
	Images                       map[string]benchImage `json:"images"`
	Kernel                       string                `json:"kernel"`
	Accelerator                  string                `json:"accelerator"`
	Host                         struct {
		Kernel  string `json:"kernel"`
		QEMU    string `json:"qemu"`
		CPUs    int    `json:"cpus"`
		LoadAvg string `json:"loadavg_at_start"`
	} `json:"host"`
	Notes        []string `json:"notes"`
	TotalSeconds float64  `json:"total_seconds"`
}

// reMultiUser is systemd's status line for multi-user.target in each of
// its StatusUnitFormat= forms: combined (trixie's default)
// "[  OK  ] Reached target multi-user.target - Multi-User System.",
// description "Reached target Multi-User System.", name
// "Reached target multi-user.target.".
var reMultiUser = regexp.MustCompile(`\bReached target (?:multi-user\.target\b|Multi-User System\b)`)

// multiUserReached says whether a serial console line (after cleanLine)
// marks multi-user.target reached.
func multiUserReached(text string) bool { return reMultiUser.MatchString(text) }

// runBench is main for -bench.
func runBench(o options) error {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	name := "e2e-bench"
	if o.bench.extension {
		name = "e2e-bench-extension"
	}
	if !set["out"] {
		o.out = "out/" + name + ".json"
	}
	if !set["work"] {
		o.work = "out/" + name
	}
	if o.bench.rounds < 1 || o.bench.rounds > 20 {
		return fmt.Errorf("-rounds %d: want 1 to 20", o.bench.rounds)
	}
	images := map[string]string{"plain": o.bench.plain, "omertaos": o.image}
	if o.bench.extension {
		delete(images, "plain")
	}
	for _, f := range images {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (make e2e-bench builds both images)", err)
		}
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	b := &bench{r: &run{opts: o}, res: benchResults{Target: benchTarget, Images: map[string]benchImage{}, Notes: []string{}}}
	if o.bench.extension {
		b.res.Target = 0
	}
	b.describeHost()
	for name, path := range images {
		img := benchImage{Path: path}
		var err error
		img.Kernel, img.Cmdline, err = imageUKI(path)
		if err != nil {
			img.Error = err.Error()
			b.note("%s: no kernel read from its ESP: %v", name, err)
		}
		b.res.Images[name] = img
	}
	b.res.Kernel = b.res.Images["omertaos"].Kernel
	if p, ok := b.res.Images["plain"]; ok && (p.Kernel == "" || p.Kernel != b.res.Kernel) {
		b.res.Kernel = fmt.Sprintf("plain %s, omertaos %s", p.Kernel, b.res.Kernel)
		b.note("the images' kernels differ: %s", b.res.Kernel)
	}
	fmt.Printf("e2e-bench: %d rounds, kernel %s, host %s (%d CPUs, load %s)\n", o.bench.rounds, b.res.Kernel, b.res.Host.Kernel, b.res.Host.CPUs, b.res.Host.LoadAvg)
	for _, name := range []string{"plain", "omertaos"} {
		if img, ok := b.res.Images[name]; ok {
			fmt.Printf("e2e-bench: %s command line: %s\n", name, img.Cmdline)
		}
	}

	failed := 0
	for i := 1; i <= o.bench.rounds && ctx.Err() == nil; i++ {
		round := b.plainRound
		if o.bench.extension {
			round = b.extensionRound
		}
		rd := benchRound{Round: i}
		if !round(ctx, &rd) {
			failed++
		}
		b.res.Rounds = append(b.res.Rounds, rd)
	}
	// scripts/qemu.sh decides the accelerator on its first boot on a host.
	if data, err := os.ReadFile(filepath.Join(o.top, ".cache/qemu-accel")); err == nil {
		b.res.Accelerator = strings.TrimSpace(lastLine(string(data)))
	}
	if a := os.Getenv("QEMU_ACCEL"); a != "" {
		b.res.Accelerator = a
	}
	b.summarize()
	b.res.TotalSeconds = time.Since(start).Seconds()
	data, _ := json.MarshalIndent(b.res, "", "  ")
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	b.print(o.out)
	switch {
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case failed > 0:
		return fmt.Errorf("%d of %d rounds failed; serial logs under %s", failed, len(b.res.Rounds), o.work)
	case !b.res.Pass:
		return fmt.Errorf("the issue's target is missed: ratio %.2f > %.1f (exit status 1 says so; the figures are in %s)", b.res.Ratio, benchTarget, o.out)
	}
	return nil
}

// plainRound boots the plain image and OMERTAOS, in that order, and says
// whether both were measured.
func (b *bench) plainRound(ctx context.Context, rd *benchRound) bool {
	i := rd.Round
	rd.Plain = b.bootPlain(ctx, i)
	if ctx.Err() == nil {
		rd.Omertaos = b.bootOmertaos(ctx, fmt.Sprintf("omertaos-%d", i), i)
	} else {
		rd.Omertaos.Error = "interrupted"
	}
	rd.PlainMultiUserSeconds, rd.OmertaosConsoleReadySecs = rd.Plain.Seconds, rd.Omertaos.Seconds
	if rd.Plain.Error != "" || rd.Omertaos.Error != "" || rd.Plain.Seconds <= 0 {
		fmt.Printf("e2e-bench: round %d failed: plain %q, omertaos %q\n", i, rd.Plain.Error, rd.Omertaos.Error)
		return false
	}
	rd.Ratio = rd.Omertaos.Seconds / rd.Plain.Seconds
	fmt.Printf("e2e-bench: round %d: plain multi-user %.1f s, OMERTAOS console ready %.1f s, ratio %.2f\n", i, rd.Plain.Seconds, rd.Omertaos.Seconds, rd.Ratio)
	return true
}

type bench struct {
	r   *run
	res benchResults
}

func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	b.res.Notes = append(b.res.Notes, s)
	fmt.Println("e2e-bench: note:", s)
}

func (b *bench) describeHost() {
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		b.res.Host.Kernel = strings.TrimSpace(string(k))
	}
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		b.res.Host.QEMU = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	b.res.Host.CPUs = runtime.NumCPU()
	b.res.Host.LoadAvg = loadAvg()
}

// bootPlain boots a fresh copy of the plain image until multi-user.target.
func (b *bench) bootPlain(ctx context.Context, round int) (res benchBoot) {
	name := fmt.Sprintf("plain-%d", round)
	disk := filepath.Join(b.r.opts.work, name+".raw")
	os.Remove(disk)
	res.SerialLog = filepath.Join(b.r.opts.work, name+"-serial.log")
	if err := copySparse(b.r.opts.bench.plain, disk); err != nil {
		res.Error = err.Error()
		return res
	}
	defer b.r.cleanupDisk(disk)
	// The same disk as the OMERTAOS boot gets; the plain image has no
	// repart.d of its own, so nothing grows into it.
	err := b.run(ctx, &res, name, disk, nil, func(bctx context.Context, v *vm) error {
		_, l, err := v.waitLine(bctx, 0, reMultiUser)
		if err != nil {
			return err
		}
		res.Seconds, res.MultiUserSeconds = l.At.Seconds(), l.At.Seconds()
		fmt.Printf("e2e-bench: round %d plain: [%6.1fs] %s\n", round, l.At.Seconds(), strings.TrimSpace(l.Text))
		return nil
	})
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// bootOmertaos boots a fresh copy of the OMERTAOS image as name, as the
// e2e's main scenario prepares it, until the console is ready; qemuArgs go
// to scripts/qemu.sh.
func (b *bench) bootOmertaos(ctx context.Context, name string, round int, qemuArgs ...string) (res benchBoot) {
	res.SerialLog = filepath.Join(b.r.opts.work, name+"-serial.log")
	_, pub, err := newSSHKey()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	disk, err := b.r.prepareDisk(name, map[string][]byte{"/omerta.yaml": siteConfig(mainProfile, mainHostname, pub, nil)})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer b.r.cleanupDisk(disk)
	err = b.run(ctx, &res, name, disk, qemuArgs, func(bctx context.Context, v *vm) error {
		bn, _, err := b.r.waitFirstboot(bctx, name, v, 0)
		if err != nil {
			return fmt.Errorf("first boot: %w", err)
		}
		res.FirstbootStartSecs, res.FirstbootDoneSeconds = bn.StartAt.Seconds(), bn.DoneAt.Seconds()
		c, err := apiclient.NewRemote(consoleURL(v), apiclient.WithFingerprint(bn.TLS))
		if err == nil {
			_, err = waitConsole(bctx, c)
		}
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		res.Seconds = time.Since(v.start).Seconds()
		res.ExtensionUnitStarted = extensionUnitStarted(v.snapshot())
		fmt.Printf("e2e-bench: round %d omertaos: console ready at %.1f s (first boot %.1f to %.1f s)\n", round, res.Seconds, res.FirstbootStartSecs, res.FirstbootDoneSeconds)
		return nil
	})
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// run grows disk as every boot's is grown, boots it as name and waits,
// bounded by the boot timeout, for what wait waits for; the guest is
// killed after, its milestones kept in res.
func (b *bench) run(ctx context.Context, res *benchBoot, name, disk string, qemuArgs []string, wait func(context.Context, *vm) error) error {
	if err := growDisk(disk, varGrowth); err != nil {
		return err
	}
	v, err := b.start(res, name, disk, qemuArgs)
	if err != nil {
		return err
	}
	defer b.stop(res, v)
	bctx, cancel := context.WithTimeout(ctx, b.r.opts.bench.bootTimeout)
	defer cancel()
	return wait(bctx, v)
}

// start boots disk as name, noting what else the host is doing.
func (b *bench) start(res *benchBoot, name, disk string, qemuArgs []string) (*vm, error) {
	res.LoadBefore = loadAvg()
	res.OtherQEMUs = countQEMUs()
	fmt.Printf("e2e-bench: booting %s (load %s, %d other QEMUs running)\n", name, res.LoadBefore, res.OtherQEMUs)
	return boot(b.r.opts.top, name, disk, res.SerialLog, qemuArgs...)
}

// stop kills the guest and records its milestones.
func (b *bench) stop(res *benchBoot, v *vm) {
	res.WallSeconds = time.Since(v.start).Seconds()
	lines := v.snapshot()
	res.Milestones = bootMilestones(lines)
	if res.MultiUserSeconds == 0 {
		for _, l := range lines {
			if multiUserReached(l.Text) {
				res.MultiUserSeconds = l.At.Seconds()
				break
			}
		}
	}
	v.kill()
	os.Remove(v.qmp)
	res.LoadAfter = loadAvg()
}

// summarize computes the medians, the ratio and the verdict.
func (b *bench) summarize() {
	if b.r.opts.bench.extension {
		b.summarizeExtension()
		return
	}
	var plain, om []float64
	for _, rd := range b.res.Rounds {
		if rd.Ratio > 0 {
			plain = append(plain, rd.PlainMultiUserSeconds)
			om = append(om, rd.OmertaosConsoleReadySecs)
		}
	}
	if len(plain) == 0 {
		b.res.Verdict = "no round measured both images"
		return
	}
	b.res.MedianPlainMultiUserSecs, b.res.MedianOmertaosConsoleReady = median(plain), median(om)
	b.res.Ratio = b.res.MedianOmertaosConsoleReady / b.res.MedianPlainMultiUserSecs
	b.res.Pass = b.res.Ratio <= benchTarget
	if b.res.Pass {
		b.res.Verdict = fmt.Sprintf("met: ratio %.2f <= %.1f", b.res.Ratio, benchTarget)
	} else {
		b.res.Verdict = fmt.Sprintf("missed: ratio %.2f > %.1f", b.res.Ratio, benchTarget)
	}
	if hw := b.r.opts.bench.hardwarePlain; hw > 0 {
		b.res.HardwarePlainSeconds = hw
		b.res.HardwareConsoleReadyEstimate = hw * b.res.Ratio
	}
	if len(plain) < len(b.res.Rounds) {
		b.note("medians over %d of %d rounds (the others failed)", len(plain), len(b.res.Rounds))
	}
}

func (b *bench) print(out string) {
	fmt.Println("e2e-bench: ---- figures ----")
	fmt.Printf("e2e-bench: kernel %s, accelerator %s, host %s, %s\n", b.res.Kernel, b.res.Accelerator, b.res.Host.Kernel, b.res.Host.QEMU)
	if b.r.opts.bench.extension {
		b.printExtension(out)
		return
	}
	fmt.Printf("e2e-bench: %-6s %12s %14s %7s\n", "round", "plain m-u s", "OMERTAOS cr s", "ratio")
	for _, rd := range b.res.Rounds {
		fmt.Printf("e2e-bench: %-6d %12.1f %14.1f %7.2f\n", rd.Round, rd.PlainMultiUserSeconds, rd.OmertaosConsoleReadySecs, rd.Ratio)
	}
	fmt.Printf("e2e-bench: median plain multi-user.target:  %.1f s\n", b.res.MedianPlainMultiUserSecs)
	fmt.Printf("e2e-bench: median OMERTAOS console ready:   %.1f s\n", b.res.MedianOmertaosConsoleReady)
	fmt.Printf("e2e-bench: ratio (medians):                 %.2f\n", b.res.Ratio)
	fmt.Printf("e2e-bench: issue 13 target (ratio <= %.1f):  %s\n", benchTarget, b.res.Verdict)
	if b.res.HardwarePlainSeconds > 0 {
		fmt.Printf("e2e-bench: on hardware, estimated:          %.1f s to console ready (plain %.1f s x %.2f; target < %.0f s)\n",
			b.res.HardwareConsoleReadyEstimate, b.res.HardwarePlainSeconds, b.res.Ratio, hardwareTarget)
	} else {
		fmt.Printf("e2e-bench: on hardware: console ready is estimated as the hardware's plain multi-user time x %.2f (target < %.0f s; -hardware-plain-seconds computes it)\n", b.res.Ratio, hardwareTarget)
	}
	for _, n := range b.res.Notes {
		fmt.Println("e2e-bench: note:", n)
	}
	fmt.Printf("e2e-bench: figures and serial log paths in %s\n", out)
}

// median of xs (not empty); xs is not changed.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// countQEMUs counts the QEMU processes running on the host (the bench's
// own have ended by the time it asks).
func countQEMUs() int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	n := 0
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil && strings.HasPrefix(string(b), "qemu-system") {
			n++
		}
	}
	return n
}

// imageUKI reads the kernel release and command line of the unified kernel
// image on a disk's ESP (EFI/Linux/*.efi), with mtools, without mounting.
func imageUKI(disk string) (kernel, cmdline string, err error) {
	parts, err := readGPT(disk)
	if err != nil {
		return "", "", err
	}
	esp, err := findPartition(parts, func(p partition) bool { return p.Type == espType }, "EFI system")
	if err != nil {
		return "", "", err
	}
	img := fmt.Sprintf("%s@@%d", disk, esp.Offset)
	cmd := exec.Command("mdir", "-b", "-i", img, "::/EFI/Linux")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("mdir ::/EFI/Linux: %v: %s", err, bytes.TrimSpace(out))
	}
	var uki string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); strings.HasSuffix(strings.ToLower(l), ".efi") {
			if uki != "" {
				return "", "", fmt.Errorf("more than one UKI on the ESP: %s, %s", uki, l)
			}
			uki = l
		}
	}
	if uki == "" {
		return "", "", fmt.Errorf("no UKI in ::/EFI/Linux (%s)", oneLine(string(out)))
	}
	if !strings.HasPrefix(uki, "::") {
		uki = "::/EFI/Linux/" + uki
	}
	tmp, err := os.MkdirTemp("", "omerta-bench-uki")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	local := filepath.Join(tmp, "uki.efi")
	if err := mtools("mcopy", "-i", img, uki, local); err != nil {
		return "", "", err
	}
	f, err := os.Open(local)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	return ukiInfo(f)
}

// ukiInfo reads the .uname and .cmdline sections of a unified kernel image.
// A malformed file is an error, never a crash.
func ukiInfo(r io.ReaderAt) (kernel, cmdline string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reading the UKI: %v", p)
		}
	}()
	f, err := pe.NewFile(r)
	if err != nil {
		return "", "", fmt.Errorf("reading the UKI: %w", err)
	}
	defer f.Close()
	section := func(name string) (string, error) {
		s := f.Section(name)
		if s == nil {
			return "", fmt.Errorf("the UKI has no %s section", name)
		}
		if s.Size > 1<<20 {
			return "", fmt.Errorf("the UKI's %s section is %d bytes", name, s.Size)
		}
		data, err := s.Data()
		if err != nil {
			return "", fmt.Errorf("the UKI's %s section: %w", name, err)
		}
		// PE pads a section to its file alignment; VirtualSize is its
		// length, and systemd's ukify ends a text section with a NUL.
		if int(s.VirtualSize) < len(data) {
			data = data[:s.VirtualSize]
		}
		if i := bytes.IndexByte(data, 0); i >= 0 {
			data = data[:i]
		}
		return strings.TrimSpace(string(data)), nil
	}
	if kernel, err = section(".uname"); err != nil {
		return "", "", err
	}
	if cmdline, err = section(".cmdline"); err != nil {
		return "", "", err
	}
	return kernel, cmdline, nil
}

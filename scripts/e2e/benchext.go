package main

// The -bench -extension mode (make e2e-bench-extension): issue 12's
// figure, boot time with and without the NVIDIA extension on a VM without
// a GPU ("it must not slow a machine that has no GPU"). Each round boots
// the OMERTAOS image twice, as built and with
// omerta-nvidia-extension.service masked on the kernel command line
// (scripts/qemu.sh --cmdline-extra), each until console ready as the
// plain comparison measures it. The order alternates by round so that a
// host that slows down during the run does not favour either; the figures
// are the medians and their ratio. There is no target to pass: the ratio
// is reported, and a round fails only if the mask did not hold (the unit
// ran in the masked boot, or not in the other).

import (
	"context"
	"fmt"
	"strings"
)

// maskExtension is the kernel parameter that leaves the extension's unit
// out of the boot: sysinit.target's Wants= on a masked unit is dropped.
const maskExtension = "systemd.mask=omerta-nvidia-extension.service"

// extensionUnitStarted says whether the serial console shows the unit
// starting, running or finished. systemd's status lines shorten a long
// name with an ellipsis, "omerta-nvidia-extension.s…" in its Starting and
// Finished lines and "omerta-nvidia-extensio…" in a running job's; a
// masked unit shows none of them.
func extensionUnitStarted(lines []line) bool {
	for _, l := range lines {
		if strings.Contains(l.Text, "omerta-nvidia-extensio") {
			return true
		}
	}
	return false
}

// extensionRound boots OMERTAOS as built and with the extension's unit
// masked, and says whether both were measured with the mask holding.
func (b *bench) extensionRound(ctx context.Context, rd *benchRound) bool {
	i := rd.Round
	rd.WithoutExtension = &benchBoot{}
	boots := []func(){
		func() { rd.Omertaos = b.bootOmertaos(ctx, fmt.Sprintf("omertaos-%d", i), i) },
		func() {
			*rd.WithoutExtension = b.bootOmertaos(ctx, fmt.Sprintf("omertaos-masked-%d", i), i, "--cmdline-extra", maskExtension)
		},
	}
	if i%2 == 0 {
		boots[0], boots[1] = boots[1], boots[0]
	}
	for _, boot := range boots {
		if ctx.Err() != nil {
			break
		}
		boot()
	}
	with, without := &rd.Omertaos, rd.WithoutExtension
	switch {
	case with.Error == "" && with.Seconds > 0 && !with.ExtensionUnitStarted:
		with.Error = "omerta-nvidia-extension.service did not start in the boot as built"
	case without.Error == "" && without.Seconds > 0 && without.ExtensionUnitStarted:
		without.Error = "omerta-nvidia-extension.service started though " + maskExtension + " was on the command line (did systemd-stub take the SMBIOS string?)"
	}
	rd.OmertaosConsoleReadySecs = with.Seconds
	if with.Error != "" || without.Error != "" || with.Seconds <= 0 || without.Seconds <= 0 {
		fmt.Printf("e2e-bench: round %d failed: as built %q, masked %q\n", i, with.Error, without.Error)
		return false
	}
	rd.ExtensionRatio = with.Seconds / without.Seconds
	fmt.Printf("e2e-bench: round %d: console ready with the extension's unit %.1f s, masked %.1f s, ratio %.3f\n", i, with.Seconds, without.Seconds, rd.ExtensionRatio)
	return true
}

// summarizeExtension computes the medians and their ratio.
func (b *bench) summarizeExtension() {
	var with, without []float64
	for _, rd := range b.res.Rounds {
		if rd.ExtensionRatio > 0 {
			with = append(with, rd.Omertaos.Seconds)
			without = append(without, rd.WithoutExtension.Seconds)
		}
	}
	if len(with) == 0 {
		b.res.Verdict = "no round measured both boots"
		return
	}
	b.res.MedianOmertaosConsoleReady, b.res.MedianWithoutExtension = median(with), median(without)
	b.res.ExtensionRatio = b.res.MedianOmertaosConsoleReady / b.res.MedianWithoutExtension
	b.res.Pass = true
	b.res.Verdict = fmt.Sprintf("console ready %.1f s with the extension's unit, %.1f s without: %+.1f s (ratio %.3f; no target, medians of %d rounds)",
		b.res.MedianOmertaosConsoleReady, b.res.MedianWithoutExtension,
		b.res.MedianOmertaosConsoleReady-b.res.MedianWithoutExtension, b.res.ExtensionRatio, len(with))
	if len(with) < len(b.res.Rounds) {
		b.note("medians over %d of %d rounds (the others failed)", len(with), len(b.res.Rounds))
	}
}

func (b *bench) printExtension(out string) {
	fmt.Printf("e2e-bench: %-6s %14s %14s %7s\n", "round", "as built cr s", "masked cr s", "ratio")
	for _, rd := range b.res.Rounds {
		without := 0.0
		if rd.WithoutExtension != nil {
			without = rd.WithoutExtension.Seconds
		}
		fmt.Printf("e2e-bench: %-6d %14.1f %14.1f %7.3f\n", rd.Round, rd.Omertaos.Seconds, without, rd.ExtensionRatio)
	}
	fmt.Printf("e2e-bench: %s\n", b.res.Verdict)
	for _, n := range b.res.Notes {
		fmt.Println("e2e-bench: note:", n)
	}
	fmt.Printf("e2e-bench: figures and serial log paths in %s\n", out)
}

// Command cmdlinebench measures what each parameter of the image's kernel
// command line costs: it boots the image's own kernel (the .linux section of
// its unified kernel image) under QEMU, with a tiny busybox initramfs that
// runs three short micro-benchmarks in the guest (fork and exec, system
// calls, page allocation and freeing) and reports the kernel's boot time,
// once with the image's command line, once with a stock one (only the
// console settings), and once with the image's minus each parameter in
// turn. Rounds interleave the variants so that a noisy host slows them
// alike; each figure is the median over rounds.
//
// Under TCG (the only accelerator here and in CI) the costs are what the
// end-to-end test pays, not what hardware pays: a CR3 write flushes QEMU's
// whole software TLB, so pti=on costs far more under emulation than on a
// CPU with PCID. See `make cmdline-bench`.
package main

import (
	"context"
	"debug/pe"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cmdlinebench:", err)
		os.Exit(1)
	}
}

type options struct {
	uki, busybox, out, accel string
	rounds                   int
	timeout                  time.Duration
}

func run(ctx context.Context) error {
	var o options
	flag.StringVar(&o.uki, "uki", ".cache/mkosi-out/omertaos.efi", "the image's unified kernel image (make image leaves it here)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "a static busybox (Debian's busybox-static)")
	flag.StringVar(&o.out, "out", "out/cmdline-bench.json", "where the results go")
	flag.StringVar(&o.accel, "accel", "tcg", "QEMU accelerator (tcg, or kvm where it works)")
	flag.IntVar(&o.rounds, "rounds", 3, "boots per variant")
	flag.DurationVar(&o.timeout, "boot-timeout", 5*time.Minute, "bound on one boot and its benchmarks")
	flag.Parse()
	if o.rounds < 1 || o.rounds > 20 {
		return fmt.Errorf("-rounds %d: want 1 to 20", o.rounds)
	}
	kernel, cmdline, err := readUKI(o.uki)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cmdlinebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g := guest{dir: dir, accel: o.accel, timeout: o.timeout}
	if err := g.prepare(kernel, o.busybox); err != nil {
		return err
	}
	variants := variantsOf(cmdline)
	fmt.Printf("cmdlinebench: the image's command line: %q\n", cmdline)
	samples := map[string][]sample{}
	for round := range o.rounds {
		for _, v := range variants {
			s, err := g.boot(ctx, v.cmdline)
			if err != nil {
				return fmt.Errorf("round %d, variant %q: %w", round+1, v.name, err)
			}
			fmt.Printf("cmdlinebench: round %d %-28s boot %5.1f s  exec %5.2f s  syscalls %5.2f s  pages %5.2f s\n",
				round+1, v.name, s.Boot, s.Exec, s.Syscalls, s.Pages)
			samples[v.name] = append(samples[v.name], s)
		}
	}
	res := summarise(cmdline, o, variants, samples)
	res.print(os.Stdout)
	return writeJSON(o.out, res)
}

// readUKI returns the kernel and the command line embedded in a unified
// kernel image (systemd-stub's .linux and .cmdline sections).
func readUKI(path string) (kernel []byte, cmdline string, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the unified kernel image: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > 512<<20 {
		return nil, "", fmt.Errorf("reading the unified kernel image %s: not a regular file of at most 512 MiB", path)
	}
	f, err := pe.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the unified kernel image %s: %w", path, err)
	}
	defer f.Close()
	section := func(name string) ([]byte, error) {
		s := f.Section(name)
		if s == nil {
			return nil, fmt.Errorf("reading the unified kernel image %s: no %s section", path, name)
		}
		b, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("reading the unified kernel image %s: section %s: %w", path, name, err)
		}
		// PE pads a section to its file alignment; VirtualSize is its length.
		if int(s.VirtualSize) < len(b) {
			b = b[:s.VirtualSize]
		}
		return b, nil
	}
	if kernel, err = section(".linux"); err != nil {
		return nil, "", err
	}
	c, err := section(".cmdline")
	if err != nil {
		return nil, "", err
	}
	return kernel, strings.TrimSpace(strings.TrimRight(string(c), "\x00")), nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	fmt.Printf("cmdlinebench: results in %s\n", path)
	return nil
}

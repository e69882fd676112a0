package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// initScript is the guest's /init. The kernel finds no /dev/console in
// the archive (the cpio writer keeps no device numbers), so the script
// mounts devtmpfs and writes to the serial port itself. The exec loop
// calls busybox by a path that is not an applet name, so that ash forks
// and execs rather than running the applet in its own process.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /dev /tmp /x
/bin/busybox mount -t devtmpfs dev /dev
exec >/dev/ttyS0 2>&1 </dev/null
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t tmpfs -o size=600m tmp /tmp
cp /bin/busybox /x/busybox
up() { read u rest </proc/uptime; echo $u; }
echo "omerta-bench: boot $(up)"
t=$(up); i=0; while [ $i -lt 200 ]; do /x/busybox true; i=$((i+1)); done
echo "omerta-bench: exec $t $(up)"
t=$(up); dd if=/dev/zero of=/dev/null bs=1 count=100000 2>/dev/null
echo "omerta-bench: syscalls $t $(up)"
t=$(up); for j in 1 2; do dd if=/dev/zero of=/tmp/f bs=1M count=256 2>/dev/null; rm /tmp/f; done
echo "omerta-bench: pages $t $(up)"
echo "omerta-bench: done"
poweroff -f
`

// guest boots the image's kernel with the benchmark initramfs.
type guest struct {
	dir, accel string
	timeout    time.Duration
}

func (g *guest) prepare(kernel []byte, busybox string) error {
	if err := os.WriteFile(filepath.Join(g.dir, "vmlinuz"), kernel, 0o644); err != nil {
		return fmt.Errorf("writing the kernel: %w", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("reading busybox (Debian's busybox-static): %w", err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, e := range []struct {
		name string
		mode cpio.FileMode
		data []byte
	}{
		{"bin", cpio.TypeDir | 0o755, nil},
		{"bin/busybox", cpio.TypeReg | 0o755, bb},
		{"init", cpio.TypeReg | 0o755, []byte(initScript)},
	} {
		if err := w.WriteHeader(&cpio.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Links: 1}); err != nil {
			return fmt.Errorf("building the initramfs: %w", err)
		}
		if _, err := w.Write(e.data); err != nil {
			return fmt.Errorf("building the initramfs: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	return os.WriteFile(filepath.Join(g.dir, "initrd.cpio"), buf.Bytes(), 0o644)
}

// sample is one boot's figures, in seconds of guest uptime.
type sample struct {
	Boot     float64 `json:"boot_s"`
	Exec     float64 `json:"exec_s"`
	Syscalls float64 `json:"syscalls_s"`
	Pages    float64 `json:"pages_s"`
}

// tcgCPU is the CPU scripts/qemu.sh gives a guest under TCG (its comment
// says why ERMS is off), so that a parameter costs here what it costs in
// the e2e's boots.
const tcgCPU = "max,-erms"

// boot runs one guest to its poweroff and reads its results.
func (g *guest) boot(ctx context.Context, cmdline string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	cpu := tcgCPU
	if g.accel == "kvm" {
		cpu = "host"
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35,accel="+g.accel, "-cpu", cpu, "-smp", "1", "-m", "1024",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-net", "none",
		"-kernel", filepath.Join(g.dir, "vmlinuz"), "-initrd", filepath.Join(g.dir, "initrd.cpio"),
		"-append", cmdline)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("starting QEMU: %w", err)
	}
	s, perr := parseSerial(io.LimitReader(out, 16<<20))
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if perr != nil {
		return sample{}, fmt.Errorf("%w (QEMU: %v; %q)", perr, werr, strings.TrimSpace(stderr.String()))
	}
	return s, nil
}

// errNoResult: the guest's console ended before its "done" line.
var errNoResult = errors.New("the guest printed no result")

// parseSerial reads "omerta-bench: NAME START END" lines (and "boot T",
// "done") from the guest's serial console.
func parseSerial(r io.Reader) (sample, error) {
	var s sample
	done := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		_, rest, ok := strings.Cut(strings.TrimRight(sc.Text(), "\r"), "omerta-bench: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if f[0] == "done" {
			done = true
			break
		}
		nums := make([]float64, 0, 2)
		for _, x := range f[1:] {
			v, err := strconv.ParseFloat(x, 64)
			if err != nil || v < 0 || v > 1e6 {
				return s, fmt.Errorf("the guest's %q line: %q is not a time", f[0], x)
			}
			nums = append(nums, v)
		}
		var dst *float64
		switch {
		case f[0] == "boot" && len(nums) == 1:
			s.Boot = nums[0]
			continue
		case f[0] == "exec" && len(nums) == 2:
			dst = &s.Exec
		case f[0] == "syscalls" && len(nums) == 2:
			dst = &s.Syscalls
		case f[0] == "pages" && len(nums) == 2:
			dst = &s.Pages
		default:
			return s, fmt.Errorf("the guest printed %q, which is not a result", rest)
		}
		*dst = nums[1] - nums[0]
	}
	if !done {
		return s, errNoResult
	}
	return s, nil
}

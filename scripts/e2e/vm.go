package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// line is one line of the guest's serial console, stamped with the time
// since power-on (QEMU's start).
type line struct {
	At   time.Duration
	Text string
}

// vm is one headless QEMU run of a disk image (scripts/qemu.sh).
type vm struct {
	name      string
	cmd       *exec.Cmd
	start     time.Time
	sshPort   int
	httpsPort int // the guest's 443 on the host's loopback
	qmp       string

	mu     sync.Mutex
	cond   *sync.Cond
	lines  []line
	exited bool
	err    error
}

var ansi = regexp.MustCompile(`\x1b(\[[0-9;=?]*[A-Za-z]|[()][0-9A-Za-z]|[78=>DEMc])`)

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// boot starts the disk under QEMU with the serial console on a pipe, and
// copies every line to logPath; qemuArgs go to scripts/qemu.sh after its
// own.
func boot(top, name, disk, logPath string, qemuArgs ...string) (*vm, error) {
	sshPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	v := &vm{name: name, sshPort: sshPort, httpsPort: httpsPort, qmp: filepath.Join(filepath.Dir(logPath), name+".qmp")}
	v.cond = sync.NewCond(&v.mu)
	os.Remove(v.qmp)
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--headless", "--disk", disk,
		"--ssh-port", fmt.Sprint(sshPort), "--https-port", fmt.Sprint(httpsPort), "--qmp", v.qmp}, qemuArgs...)
	v.cmd = exec.Command(filepath.Join(top, "scripts/qemu.sh"), args...)
	v.cmd.Stderr = log
	// If this test dies, however it dies, the guest goes with it (qemu.sh
	// turns SIGTERM into SIGKILL for QEMU).
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	go v.read(out, log)
	return v, nil
}

// cleanLine is a serial console line as the test matches it: without its
// line ending, only the last state of a line that a progress spinner
// redraws with \r, and without terminal escape sequences.
func cleanLine(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndex(s, "\r"); i >= 0 {
		s = s[i+1:]
	}
	return ansi.ReplaceAllString(s, "")
}

func (v *vm) read(r io.Reader, log *os.File) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			at := time.Since(v.start)
			fmt.Fprintf(log, "[%7.1fs] %s", at.Seconds(), s)
			if !strings.HasSuffix(s, "\n") {
				fmt.Fprintln(log)
			}
			s = cleanLine(s)
			v.mu.Lock()
			v.lines = append(v.lines, line{At: at, Text: s})
			v.cond.Broadcast()
			v.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	werr := v.cmd.Wait()
	log.Close()
	v.mu.Lock()
	v.exited, v.err = true, werr
	v.cond.Broadcast()
	v.mu.Unlock()
}

// waitLine waits until a line from index from on matches re, and returns its
// index. It fails when the guest stops or the deadline passes.
func (v *vm) waitLine(ctx context.Context, from int, re *regexp.Regexp) (int, line, error) {
	stop := context.AfterFunc(ctx, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
	defer stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := from; ; i++ {
		for i >= len(v.lines) {
			if v.exited {
				return i, line{}, fmt.Errorf("%s: QEMU exited (%v) before a line matched %q", v.name, v.err, re)
			}
			if ctx.Err() != nil {
				return i, line{}, fmt.Errorf("%s: no line matched %q in time: %w", v.name, re, ctx.Err())
			}
			v.cond.Wait()
		}
		if re.MatchString(v.lines[i].Text) {
			return i, v.lines[i], nil
		}
	}
}

// snapshot returns the lines so far.
func (v *vm) snapshot() []line {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]line(nil), v.lines...)
}

// powerCut kills QEMU outright: the guest gets no chance to flush anything.
// qemu.sh turns SIGTERM into SIGKILL for QEMU.
func (v *vm) powerCut() error {
	if err := v.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return v.wait(30 * time.Second)
}

// wait waits for QEMU to exit.
func (v *vm) wait(d time.Duration) error {
	deadline := time.Now().Add(d)
	v.mu.Lock()
	defer v.mu.Unlock()
	for !v.exited {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: QEMU still running after %s", v.name, d)
		}
		v.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		v.mu.Lock()
	}
	return nil
}

// kill ends QEMU if it is still running; for cleanup paths.
func (v *vm) kill() {
	v.mu.Lock()
	exited := v.exited
	v.mu.Unlock()
	if !exited {
		_ = v.powerCut()
	}
}

// powerButton presses the ACPI power button through QMP; systemd-logind
// shuts the guest down cleanly.
func (v *vm) powerButton() error {
	c, err := net.DialTimeout("unix", v.qmp, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s: QMP: %w", v.name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("%s: QMP greeting: %w", v.name, err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return err
		}
		for {
			var resp map[string]any
			if err := dec.Decode(&resp); err != nil {
				return fmt.Errorf("%s: QMP %s: %w", v.name, cmd, err)
			}
			if e, ok := resp["error"]; ok {
				return fmt.Errorf("%s: QMP %s: %v", v.name, cmd, e)
			}
			if _, ok := resp["return"]; ok {
				break
			}
		}
	}
	return nil
}

// shutdown presses the power button and waits for QEMU to exit; a guest
// that ignores the button is killed and that is an error.
func (v *vm) shutdown(d time.Duration) error {
	if err := v.powerButton(); err != nil {
		v.kill()
		return err
	}
	if err := v.wait(d); err != nil {
		v.kill()
		return errors.Join(err, errors.New("killed it"))
	}
	return nil
}

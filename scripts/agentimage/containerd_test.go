package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/image/agents/tool/ops"
)

// requireContainerd skips the test where it cannot run containers, unless
// CI=true: there a missing containerd is a broken harness, not a reason.
func requireContainerd(t *testing.T) {
	t.Helper()
	var reason string
	if os.Geteuid() != 0 {
		reason = "running containers needs root"
	} else {
		var missing []string
		for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
			if _, err := exec.LookPath(bin); err != nil {
				missing = append(missing, bin)
			}
		}
		if len(missing) > 0 {
			reason = "not installed: " + strings.Join(missing, ", ")
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and %s", reason)
	}
	t.Skip(reason)
}

// ctrd is a private containerd: its own root, state, socket and runc root
// under one temp dir, so nothing is shared with a system containerd.
type ctrd struct {
	dir, sock, ns string
	cmd           *exec.Cmd
	done          chan error
}

func startContainerd(t *testing.T, ctx context.Context) *ctrd {
	t.Helper()
	// A short path: the socket's must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &ctrd{dir: dir, sock: filepath.Join(dir, "c.sock"), ns: fmt.Sprintf("agentimage-test-%d", os.Getpid()), done: make(chan error, 1)}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, d.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// If the test binary dies, containerd goes with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		t.Fatalf("starting containerd: %v", err)
	}
	go func() { d.done <- d.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() { d.stop(t) })
	d.waitReady(t, ctx)
	return d
}

func (d *ctrd) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, code, _ := d.ctr(ctx, nil, "version"); code == 0 {
			return
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("containerd exited: %v\n%s", err, d.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("containerd did not answer within 30s\n%s", d.logTail())
		}
	}
}

// stop ends containerd (SIGTERM, then SIGKILL), unmounts whatever a failed
// test left mounted under the dir, and removes it.
func (d *ctrd) stop(t *testing.T) {
	if t.Failed() {
		t.Logf("containerd log:\n%s", d.logTail())
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	for _, m := range mountsUnder(d.dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("removing %s: %v", d.dir, err)
	}
}

func (d *ctrd) logTail() string {
	data, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			out = append([]string{mp}, out...)
		}
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (d *ctrd) command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", d.sock, "-n", d.ns}, args...)...)
}

// ctr runs one ctr command and returns its output and exit status.
func (d *ctrd) ctr(ctx context.Context, stdin io.Reader, args ...string) (string, string, int, error) {
	cmd := d.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), exitCode(err), err
}

func (d *ctrd) mustCtr(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	stdout, stderr, _, err := d.ctr(ctx, nil, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// waitTask polls `ctr tasks ls` until the task has the status.
func (d *ctrd) waitTask(t *testing.T, ctx context.Context, id, status string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		out, _, _, _ := d.ctr(ctx, nil, "tasks", "ls")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == id && f[2] == status {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s not %s within %v", id, status, within)
}

// runTask is `ctr run --rm --read-only IMAGE ID /agent task` with input on
// standard input, a tmpfs on /tmp as the runtime mounts one. ctr drops an
// end of input that comes before the task exists (the task would wait for
// more forever), so the input is written once the task is running.
func (d *ctrd) runTask(t *testing.T, ctx context.Context, ref, id, input string) (string, int) {
	t.Helper()
	cmd := d.command(ctx, "run", "--rm", "--read-only", "--runc-root", filepath.Join(d.dir, "runc"),
		"--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:size=16m",
		ref, id, "/agent", "task")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.waitTask(t, ctx, id, "RUNNING", 30*time.Second)
	io.WriteString(stdin, input)
	stdin.Close()
	err = cmd.Wait()
	code := exitCode(err)
	if code < 0 {
		t.Fatalf("ctr run %s: %v\n%s", id, err, stderr.String())
	}
	return stdout.String(), code
}

// TestContainerdImportAndRun imports both archives into a private
// containerd with `ctr images import`, runs tool tasks in read-only
// containers as the image's user, and starts the web agent and checks its
// health from inside and its graceful stop.
func TestContainerdImportAndRun(t *testing.T) {
	requireContainerd(t)
	dir := builtArchives(t)
	index := readIndex(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startContainerd(t, ctx)
	for _, a := range agents {
		r := index[a.name]
		d.mustCtr(t, ctx, "images", "import", filepath.Join(dir, r.Archive))
		if !imageListed(d.mustCtr(t, ctx, "images", "ls"), r.Ref, r.Digest) {
			t.Fatalf("after import, `ctr images ls` does not list %s at %s", r.Ref, r.Digest)
		}
	}
	t.Run("tool", func(t *testing.T) { checkToolTasks(t, ctx, d, index["tool"].Ref) })
	t.Run("web", func(t *testing.T) { checkWebAgent(t, ctx, d, index["web"].Ref, "w-agent") })
	t.Run("echo-model", func(t *testing.T) { checkWebAgent(t, ctx, d, index["echo-model"].Ref, "e-agent") })
}

func imageListed(ls, ref, digest string) bool {
	for _, line := range strings.Split(ls, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref && f[2] == digest {
			return true
		}
	}
	return false
}

func checkToolTasks(t *testing.T, ctx context.Context, d *ctrd, ref string) {
	input := `{"op":"extract","text":"Mail ops@example.com by 2026-03-01 about https://example.org/x, 1,250 units."}`
	want, err := ops.Run(ops.DefaultEnv, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	if got, code := d.runTask(t, ctx, ref, "t-extract", input); code != 0 || got != string(want) {
		t.Errorf("extract in the container: exit %d\n got %s\nwant %s", code, got, want)
	}
	got, code := d.runTask(t, ctx, ref, "t-inspect", `{"op":"inspect"}`)
	var in ops.InspectResult
	if err := json.Unmarshal([]byte(got), &in); err != nil || code != 0 {
		t.Fatalf("inspect: exit %d, %v: %s", code, err, got)
	}
	if in.UID != agentUID || in.GID != agentGID || strings.Trim(in.CapEff, "0") != "" || in.NoNewPrivs != 1 || in.RootWritable || !in.TmpWritable {
		t.Errorf("the container is not locked down as the image asks: %+v", in)
	}
	t.Logf("inspect inside the container: %s", strings.TrimSpace(got))
	got, code = d.runTask(t, ctx, ref, "t-refused", `{"op":"rm -rf /"}`)
	if code != exitRefusedByTool || !strings.Contains(got, `"code":"unknown_op"`) {
		t.Errorf("a bad task: exit %d, %s", code, got)
	}
}

// exitRefusedByTool is the tool agent's status for a refused task.
const exitRefusedByTool = 2

// checkWebAgent runs a serving agent (web, echo-model) until its health
// check passes, then stops it with SIGTERM.
func checkWebAgent(t *testing.T, ctx context.Context, d *ctrd, ref, id string) {
	d.mustCtr(t, ctx, "run", "-d", "--read-only", "--runc-root", filepath.Join(d.dir, "runc"), "--env", "AGENT_NAME=ctr test", ref, id)
	t.Cleanup(func() {
		c := context.Background()
		d.ctr(c, nil, "tasks", "kill", "-s", "SIGKILL", id)
		d.ctr(c, nil, "tasks", "rm", "-f", id)
		d.ctr(c, nil, "containers", "rm", id)
	})
	d.waitTask(t, ctx, id, "RUNNING", 30*time.Second)
	healthy := false
	for i := 0; i < 50 && !healthy; i++ {
		_, _, code, _ := d.ctr(ctx, nil, "tasks", "exec", "--exec-id", fmt.Sprintf("hc%d", i), id, "/agent", "healthcheck")
		healthy = code == 0
		if !healthy {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !healthy {
		t.Fatalf("%s never passed its health check inside the container", ref)
	}
	start := time.Now()
	d.mustCtr(t, ctx, "tasks", "kill", id) // SIGTERM
	d.waitTask(t, ctx, id, "STOPPED", stopGrace)
	t.Logf("%s healthy in the container; stopped %v after SIGTERM", ref, time.Since(start).Round(time.Millisecond))
}

// stopGrace is how long the web agent may take to stop on SIGTERM: it
// drains for at most 10 s, and an idle one stops at once.
const stopGrace = 15 * time.Second

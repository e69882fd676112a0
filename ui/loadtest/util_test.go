package loadtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func moduleRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

func mustRun(t *testing.T, dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startChild starts cmd in its own process group with its output in log,
// and stops it (SIGTERM, then SIGKILL) at cleanup. It returns the pid.
func startChild(t *testing.T, name, log string, cmd *exec.Cmd) int {
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("%s did not stop on SIGTERM", name)
		}
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s's log:\n%s", name, b)
		}
	})
	return cmd.Process.Pid
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() error) {
	deadline := time.Now().Add(d)
	for {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var floorRE = regexp.MustCompile(`floor listening on (\S+)`)

// startFloor runs the floor role with bodies of the console's sizes.
func (e *env) startFloor(t *testing.T, page, js int) string {
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=floor", envCert+"="+e.certFile, envKey+"="+e.keyFile,
		envPageSize+"="+strconv.Itoa(page), envJSONSize+"="+strconv.Itoa(js))
	log := filepath.Join(e.dir, "floor.log")
	startChild(t, "floor", log, cmd)
	var addr string
	waitFor(t, "the floor", 10*time.Second, func() error {
		b, _ := os.ReadFile(log)
		if m := floorRE.FindSubmatch(b); m != nil {
			addr = string(m[1])
			return nil
		}
		return fmt.Errorf("no address yet: %s", b)
	})
	return "https://" + addr
}

// rssWatch samples a process's resident memory twice a second.
type rssWatch struct {
	pid  int
	mu   sync.Mutex
	max  int64
	anon int64 // the most anonymous memory sampled (RssAnon)
	file int64 // the most of the binary's pages sampled (RssFile)
	// pmd is the most of those mapped as 2 MiB folios (FilePmdMapped):
	// where the file system caches the binary in large folios (ext4 since
	// Linux 6.16), a page of the binary touched counts all 2 MiB around it.
	pmd int64
	// idle is RSS when sampling began, before the load.
	idle int64
	done chan struct{}
	once sync.Once
	hwm  int64
}

func newRSSWatch(pid int) *rssWatch {
	w := &rssWatch{pid: pid, done: make(chan struct{})}
	w.idle, _ = statusKB(pid, "VmRSS")
	go func() {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			if rss, _ := statusKB(pid, "VmRSS"); rss > 0 {
				anon, _ := statusKB(pid, "RssAnon")
				file, _ := statusKB(pid, "RssFile")
				pmd, _ := kbLine(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "FilePmdMapped")
				w.mu.Lock()
				w.max, w.anon, w.file, w.pmd = max(w.max, rss), max(w.anon, anon), max(w.file, file), max(w.pmd, pmd)
				w.mu.Unlock()
			}
			select {
			case <-w.done:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

// stop ends sampling; it returns the largest RSS sampled, the kernel's
// high-water mark (VmHWM), the largest anonymous part sampled, the
// largest part of the binary's pages sampled and the largest of those in
// 2 MiB folios, in bytes. The pages of the binary are shared with any
// other process running the same file: on the appliance, omertad; here,
// none (omertad is the test binary).
func (w *rssWatch) stop() [6]int64 {
	w.once.Do(func() {
		close(w.done)
		w.hwm, _ = statusKB(w.pid, "VmHWM")
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return [6]int64{w.max, w.hwm, w.anon, w.file, w.pmd, w.idle}
}

// statusKB reads a "Key: N kB" line of /proc/pid/status, in bytes.
func statusKB(pid int, key string) (int64, error) {
	return kbLine(fmt.Sprintf("/proc/%d/status", pid), key)
}

// kbLine reads a "Key: N kB" line of a /proc file, in bytes.
func kbLine(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in %s", key, path)
}

// cpuTime is the user and system CPU time a process has used so far
// (/proc/pid/stat, in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command, in parentheses, may hold spaces: fields count from
	// after its closing one (utime and stime are fields 14 and 15).
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// report prints the table and checks issue 10's targets: p95 at most
// 15 ms with no error for each console target, at most twice the floor's
// p95, and the console's RSS under 50 MB.
func report(t *testing.T, res []result, rss [6]int64, dur time.Duration) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d clients, %v per target, HTTPS on 127.0.0.1, %d agents\n", clientsN, dur, agentCount)
	fmt.Fprintf(&b, "%-30s %9s %8s %8s %8s %8s %8s %7s %8s %8s %8s\n", "target", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "bytes",
		"cons CPU", "omtd CPU")
	for _, r := range res {
		maxLat := time.Duration(0)
		if len(r.lat) > 0 {
			maxLat = r.lat[len(r.lat)-1]
		}
		fmt.Fprintf(&b, "%-30s %9d %8.0f %8s %8s %8s %8s %7d %8d %8s %8s\n", r.name, len(r.lat), r.rps(),
			ms(r.pct(50)), ms(r.pct(95)), ms(r.pct(99)), ms(maxLat), r.errors, r.bodyBytes, r.cpuPer(r.cpu[0]), r.cpuPer(r.cpu[1]))
	}
	b.WriteString("(cons CPU, omtd CPU: milliseconds of the console's and omertad's CPU time per answer during the run)\n")
	for i := 0; i+1 < len(res); i += 2 {
		c, f := res[i], res[i+1]
		ratio := float64(c.pct(95)) / float64(max(f.pct(95), 1))
		fmt.Fprintf(&b, "ratio %s / floor, p95: %.2f (p50 %.2f, p99 %.2f)\n", c.name, ratio,
			float64(c.pct(50))/float64(max(f.pct(50), 1)), float64(c.pct(99))/float64(max(f.pct(99), 1)))
		verdict(t, &b, c.name+" p95 <= 15 ms", c.pct(95) <= targetP95)
		verdict(t, &b, c.name+" no errors", c.errors == 0 && f.errors == 0, c.firstErr, f.firstErr)
		verdict(t, &b, c.name+" p95 <= 2x floor", ratio <= targetRatio)
	}
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Fprintf(&b, "console RSS: %.1f MiB at most sampled, %.1f MiB high-water mark; anonymous memory at most %.1f MiB, the binary's pages at most %.1f MiB (%.1f MiB of them in 2 MiB folios)\n",
		mib(rss[0]), mib(rss[1]), mib(rss[2]), mib(rss[3]), mib(rss[4]))
	fmt.Fprintf(&b, "console RSS before the load (signed in, idle): %.1f MiB\n", mib(rss[5]))
	verdict(t, &b, "console RSS < 50 MB", rss[1] < targetRSS)
	t.Log(b.String())
}

func verdict(t *testing.T, b *strings.Builder, what string, ok bool, detail ...string) {
	word := "MET "
	if !ok {
		word = "MISS"
		t.Errorf("target missed: %s %s", what, strings.Join(detail, " "))
	}
	fmt.Fprintf(b, "  %s %s\n", word, what)
}

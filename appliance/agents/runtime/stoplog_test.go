package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopKeepsStderr: what an agent writes to stderr reaches its log
// even after its stdout has ended, and its last line (the "stopping" it
// prints on SIGTERM) is in the log when Stop returns. Given one path for
// both streams (cio.LogFile), containerd's shim shares one descriptor and
// closes it when stdout ends; this agent closes its stdout at once, so
// there every later stderr line is lost, not only now and then a last one
// as with the sample agents. Three stops and starts of the same container:
// each start appends to the log the one before left.
func TestStopKeepsStderr(t *testing.T) {
	s := newSuite(t)
	for _, iso := range isolations(t) {
		t.Run(string(iso), func(t *testing.T) {
			e := s.newEnv(t)
			ctx := context.Background()
			id := "stderr-" + string(iso)
			e.run(t, e.spec(id, iso, "/bin/sh", "-c",
				`echo out; exec 1>&-; echo ready >&2; trap "echo stopping >&2; exit 0" TERM; while :; do sleep 0.1; done`))
			path, err := e.rt.Logs(id)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				if i > 1 {
					if err := e.rt.Start(ctx, id); err != nil {
						t.Fatalf("start %d: %v", i, err)
					}
				}
				waitLog(t, path, lineCounts{out: i, ready: i, stopping: i - 1}, 20*time.Second)
				if err := e.rt.Stop(ctx, id, 20*time.Second); err != nil {
					t.Fatalf("stop %d: %v", i, err)
				}
				b, _ := os.ReadFile(path)
				if got := countLines(b); got != (lineCounts{i, i, i}) || !strings.HasSuffix(string(b), "stopping\n") {
					t.Fatalf("the log after stop %d holds %q, want %d of each line, stopping last", i, b, i)
				}
				if st, err := e.rt.Status(ctx, id); err != nil || st.ExitCode != 0 {
					t.Fatalf("after stop %d: %+v, %v; want exit 0 (SIGTERM handled)", i, st, err)
				}
			}
		})
	}
}

// lineCounts counts the test agent's lines in its log: the order of the
// lines of two streams is not kept, one stream's is.
type lineCounts struct{ out, ready, stopping int }

func countLines(b []byte) lineCounts {
	var c lineCounts
	for _, l := range strings.Split(string(b), "\n") {
		switch l {
		case "out":
			c.out++
		case "ready":
			c.ready++
		case "stopping":
			c.stopping++
		}
	}
	return c
}

// waitLog waits until the log holds want's lines.
func waitLog(t *testing.T, path string, want lineCounts, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(path)
		if countLines(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log holds %q after %v, want %+v", b, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCreateLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a1.log")
	if err := createLog(p); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("created log: %v, %v; want a regular file, mode 0600", fi.Mode(), err)
	}
	if err := os.WriteFile(p, []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := createLog(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kept\n" {
		t.Errorf("an existing log was changed: %q", b)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.log")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{fifo, link, sub} {
		if err := createLog(bad); err == nil {
			t.Errorf("createLog(%s) accepted something that is not a regular file", bad)
		}
	}
}

// TestLogIOPaths: the two streams name the same file by different
// strings (the shim compares the strings).
func TestLogIOPaths(t *testing.T) {
	dir := t.TempDir()
	r := &Runtime{logDir: dir + "/"}
	io, err := r.logIO("a1")("ignored")
	if err != nil {
		t.Fatal(err)
	}
	cfg := io.Config()
	if cfg.Stdout == cfg.Stderr || cfg.Stdin != "" || cfg.Terminal {
		t.Fatalf("config %+v: want distinct stdout and stderr, no stdin, no terminal", cfg)
	}
	a, errA := os.Stat(cfg.Stdout)
	b, errB := os.Stat(cfg.Stderr)
	if errA != nil || errB != nil || !os.SameFile(a, b) || cfg.Stdout != filepath.Join(dir, "a1.log") {
		t.Fatalf("stdout %s and stderr %s: %v, %v; want both the log %s", cfg.Stdout, cfg.Stderr, errA, errB, filepath.Join(dir, "a1.log"))
	}
}

package agents

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTailLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		cut  bool
		want string
	}{
		{"", 3, false, ""},
		{"a\nb\nc\n", 2, false, "b\nc\n"},
		{"a\nb\nc", 2, false, "b\nc"},
		{"a\nb\nc\n", 10, false, "a\nb\nc\n"},
		{"partial\nb\nc\n", 10, true, "b\nc\n"},
		{"only-partial", 10, true, "only-partial"},
		{"\n\n\n", 2, false, "\n\n"},
		{"a\n", 0, false, ""},
	} {
		if got := string(tailLines([]byte(c.in), c.n, c.cut)); got != c.want {
			t.Errorf("tailLines(%q, %d, %v) = %q, want %q", c.in, c.n, c.cut, got, c.want)
		}
	}
}

func FuzzTailLines(f *testing.F) {
	for _, s := range []string{"", "a\nb\n", "\n", "x", "a\r\nb", "\n\n\nz"} {
		f.Add([]byte(s), 2, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, n int, cut bool) {
		n = n % 50
		out := tailLines(b, n, cut)
		if !bytes.HasSuffix(b, out) {
			t.Fatalf("%q is not a suffix of %q", out, b)
		}
		if n > 0 && bytes.Count(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) >= n {
			t.Fatalf("%q holds more than %d lines", out, n)
		}
	})
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	ctx := context.Background()
	if out, err := e.s.Logs(ctx, "tool", 5); err != nil || len(out) != 0 {
		t.Fatalf("empty log: %q %v", out, err)
	}
	var b strings.Builder
	for i := range 20 {
		b.WriteString("line " + string(rune('a'+i)) + "\n")
	}
	e.rt.AppendLog("tool-g1", b.String())
	out, err := e.s.Logs(ctx, "tool", 3)
	if err != nil || string(out) != "line r\nline s\nline t\n" {
		t.Errorf("tail 3: %q %v", out, err)
	}
	for _, n := range []int{-1, MaxLogLines + 1} {
		if _, err := e.s.Logs(ctx, "tool", n); !errors.Is(err, ErrInvalid) {
			t.Errorf("tail %d: %v", n, err)
		}
	}
}

func TestLogsRefuseAFIFO(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	p, _ := e.rt.Logs("tool-g1")
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.s.Logs(context.Background(), "tool", 5); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO was read as a log")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
}

func TestFollowLogs(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.AppendLog("tool-g1", "old 1\nold 2\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := e.s.FollowLogs(ctx, "tool", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lines := bufio.NewScanner(r)
	next := func() string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			if lines.Scan() {
				got <- lines.Text()
			} else {
				got <- "EOF"
			}
		}()
		select {
		case s := <-got:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no line within 5s")
			return ""
		}
	}
	if l := next(); l != "old 2" {
		t.Fatalf("first %q", l)
	}
	e.rt.AppendLog("tool-g1", "new 1\n")
	if l := next(); l != "new 1" {
		t.Fatalf("appended %q", l)
	}
	// Rotation truncates the file in place; following goes on from its start.
	p, _ := e.rt.Logs("tool-g1")
	os.Truncate(p, 0)
	time.Sleep(2 * followPoll)
	e.rt.AppendLog("tool-g1", "after\n")
	if l := next(); l != "after" {
		t.Fatalf("after rotation %q", l)
	}
	cancel()
	if l := next(); l != "EOF" {
		t.Fatalf("after cancel %q", l)
	}
}

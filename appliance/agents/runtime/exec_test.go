package runtime

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func testExec(t *testing.T, s *suite) {
	e := s.newEnv(t)
	id := "execs"
	e.run(t, e.spec(id, Container))
	ctx := context.Background()
	sh := func(script string) ExecSpec { return ExecSpec{Args: []string{"/bin/sh", "-c", script}} }
	tests := []struct {
		name      string
		es        ExecSpec
		code      uint32
		stdout    string
		stderr    string
		truncated bool
		err       error
	}{
		{name: "exit code and stderr", es: sh("echo out; echo err >&2; exit 7"), code: 7, stdout: "out\n", stderr: "err\n"},
		{name: "stdin to stdout", es: ExecSpec{Args: []string{"/bin/cat"}, Stdin: strings.NewReader(`{"task":1}`)}, stdout: `{"task":1}`},
		{name: "env added", es: ExecSpec{Args: []string{"/bin/sh", "-c", "echo $GREETING"}, Env: []string{"GREETING=hi"}}, stdout: "hi\n"},
		{name: "output truncated", es: ExecSpec{Args: []string{"/bin/sh", "-c", "yes | head -c 100000"}, MaxOutput: 1000},
			stdout: strings.Repeat("y\n", 500), truncated: true},
		{name: "timeout kills", es: ExecSpec{Args: []string{"/bin/sleep", "30"}, Timeout: 300 * time.Millisecond},
			code: 137, err: ErrTimeout},
		{name: "missing program", es: ExecSpec{Args: []string{"/no/such"}}, err: ErrStartFailed},
		{name: "empty args", es: ExecSpec{}, err: ErrInvalid},
		{name: "bad env", es: ExecSpec{Args: []string{"true"}, Env: []string{"=x"}}, err: ErrInvalid},
		{name: "output cap too large", es: ExecSpec{Args: []string{"true"}, MaxOutput: MaxOutputCap + 1}, err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := e.rt.Exec(ctx, id, tc.es)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tc.err == ErrTimeout && time.Since(start) > 5*time.Second {
				t.Errorf("timeout took %v", time.Since(start))
			}
			if tc.err != nil && tc.err != ErrTimeout {
				return
			}
			if res.ExitCode != tc.code || string(res.Stdout) != tc.stdout || string(res.Stderr) != tc.stderr || res.Truncated != tc.truncated {
				t.Errorf("got exit %d stdout %q stderr %q truncated %v", res.ExitCode, res.Stdout, res.Stderr, res.Truncated)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := e.rt.Exec(cctx, id, ExecSpec{Args: []string{"/bin/sleep", "30"}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled exec: %v", err)
		}
		// The killed process is gone: only init (and this ps) remain.
		if ps := e.sh(t, id, "ps -o comm | grep -c sleep"); ps != "1" {
			t.Errorf("sleep processes after cancel: %s, want only pid 1", ps)
		}
	})
}

func TestBoundedBuffer(t *testing.T) {
	b := &boundedBuffer{max: 5}
	for _, w := range []string{"ab", "cd", "ef", "gh"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: it must swallow everything", w, n, err)
		}
	}
	if got := b.Bytes(); !bytes.Equal(got, []byte("abcde")) || !b.Truncated() {
		t.Errorf("kept %q truncated %v", got, b.Truncated())
	}
	exact := &boundedBuffer{max: 4}
	exact.Write([]byte("abcd"))
	if exact.Truncated() {
		t.Error("exactly max bytes reported as truncated")
	}
}

func testExecStopped(t *testing.T, s *suite) {
	e := s.newEnv(t)
	e.run(t, e.spec("quitter", Container, "/bin/true"))
	e.waitState(t, "quitter", Stopped, 5*time.Second)
	if _, err := e.rt.Exec(context.Background(), "quitter", ExecSpec{Args: []string{"/bin/true"}}); !errors.Is(err, ErrState) {
		t.Errorf("exec in a stopped task: %v, want ErrState", err)
	}
}

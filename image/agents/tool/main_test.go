package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/image/agents/tool/ops"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/tasks")

// testEnv keeps the inspect op away from the real root: a temp dir with a
// proc tree copied from testdata/proc (a locked-down container's status).
func testEnv(t testing.TB) ops.Env {
	dir := t.TempDir()
	for _, rel := range []string{"self/status", "sys/kernel/osrelease"} {
		data, err := os.ReadFile(filepath.Join("testdata/proc", rel))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "proc", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ops.Env{Root: dir, Proc: filepath.Join(dir, "proc"), Tmp: dir}
}

func runTask(t testing.TB, input []byte) (int, string, string) {
	return runTaskIn(testEnv(t), input)
}

func runTaskIn(env ops.Env, input []byte) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), env, []string{"task"}, bytes.NewReader(input), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestTaskGolden runs every testdata/tasks/NAME.json through "/agent task"
// and compares the exit status and standard output with NAME.golden.
func TestTaskGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/tasks/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no task fixtures: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, _ := runTask(t, input)
			got := fmt.Sprintf("exit %d\n%s", code, stdout)
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestHostileTasks covers inputs too large to keep as fixtures. Each must be
// refused with its code, quickly: the limits exist so that no input makes
// the agent use unbounded time or memory.
func TestHostileTasks(t *testing.T) {
	deep := strings.Repeat(`{"a":`, ops.MaxDepth) + "1" + strings.Repeat("}", ops.MaxDepth)
	longKey := strings.Repeat("k", 16<<10)
	// 60 levels of 16 KiB keys above 300 leaves: each leaf's flattened key
	// repeats the whole 960 KiB prefix, about 290 MiB if nothing stopped it.
	var fan strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&fan, `{"%s%d":`, longKey[:len(longKey)-8], i)
	}
	fan.WriteString("[" + strings.Repeat("0,", 299) + "0]" + strings.Repeat("}", 60))
	big := `"` + strings.Repeat("x", 900<<10) + `"`
	picks := `"", "", "", "", "", ""`
	tests := []struct {
		name, input, code string
	}{
		{"stdin over 1 MiB", `{"op":"extract","text":"` + strings.Repeat("a", ops.MaxInput) + `"}`, ops.CodeInputTooLarge},
		{"nesting one past the limit", `{"op":"transform","input":` + deep + `}`, ops.CodeTooDeep},
		{"flatten that multiplies keys", `{"op":"transform","flatten":true,"input":` + fan.String() + `}`, ops.CodeOutputTooLarge},
		{"pick that copies the document", `{"op":"transform","input":` + big + `,"pick":[` + picks + `]}`, ops.CodeOutputTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, _ := runTask(t, []byte(tt.input))
			if code != exitRefused {
				t.Errorf("exit %d, want %d", code, exitRefused)
			}
			if got := errorCode(t, stdout); got != tt.code {
				t.Errorf("error code %q, want %q", got, tt.code)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestLinearInHostileText: text built to hit the quadratic paths a naive
// scanner would have (every byte a match, every full stop after an
// abbreviation) must still finish fast.
func TestLinearInHostileText(t *testing.T) {
	texts := map[string]string{
		"numbers":       strings.Repeat("1 ", 400<<10),
		"dates":         strings.Repeat("2024-01-02 Jan 3, 2024 ", 30<<10),
		"urls":          strings.Repeat("http://a.b/ ", 80<<10),
		"abbreviations": strings.Repeat("Mr. ", 200<<10),
		"no spaces":     strings.Repeat("a.", 400<<10),
	}
	for name, text := range texts {
		for _, op := range []string{"extract", "summarize"} {
			t.Run(name+"/"+op, func(t *testing.T) {
				input, _ := json.Marshal(map[string]string{"op": op, "text": text})
				start := time.Now()
				code, stdout, _ := runTask(t, input)
				if code != exitOK && errorCode(t, stdout) != ops.CodeOutputTooLarge {
					t.Fatalf("exit %d: %.200s", code, stdout)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("took %v on %d bytes", d, len(input))
				}
			})
		}
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{nil, exitRefused},
		{[]string{"serve", "extra"}, exitRefused},
		{[]string{"rm"}, exitRefused},
		{[]string{"help"}, exitOK},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), testEnv(t), tt.args, strings.NewReader(""), &stdout, &stderr); code != tt.code {
			t.Errorf("run %q = %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
		}
	}
}

// TestServeStopsOnCancel: serve is the container's PID 1 and must return
// (exit 0) once SIGTERM cancels its context, logging start and stop.
func TestServeStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan int, 1)
	env := testEnv(t)
	go func() { done <- run(ctx, env, []string{"serve"}, strings.NewReader(""), &bytes.Buffer{}, &stderr) }()
	select {
	case <-done:
		t.Fatal("serve returned before it was stopped")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop")
	}
	if log := stderr.String(); !strings.Contains(log, "ready") || !strings.Contains(log, "stopping") {
		t.Errorf("log %q lacks the start or stop line", log)
	}
}

func errorCode(t testing.TB, stdout string) string {
	t.Helper()
	var body struct {
		Error *ops.Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &body); err != nil || body.Error == nil {
		t.Fatalf("standard output is not an error object: %v: %.200q", err, stdout)
	}
	return body.Error.Code
}

var knownCodes = map[string]bool{
	ops.CodeInputTooLarge: true, ops.CodeInvalidJSON: true, ops.CodeTooDeep: true,
	ops.CodeInvalidRequest: true, ops.CodeUnknownOp: true, ops.CodeUnknownField: true,
	ops.CodeInvalidField: true, ops.CodeConflict: true, ops.CodeOutputTooLarge: true,
}

// FuzzTask feeds arbitrary standard input to "/agent task": whatever comes
// in, the agent answers with exactly one JSON object on one line, a result
// (exit 0) or an error with a known code (exit 2), never a crash.
func FuzzTask(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/tasks/*.json")
	for _, in := range inputs {
		if data, err := os.ReadFile(in); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"op":"inspect"}`))
	env := testEnv(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		code, stdout, _ := runTaskIn(env, input)
		if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
			t.Fatalf("output is not one line: %.200q", stdout)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
			t.Fatalf("output is not a JSON object: %v", err)
		}
		_, isErr := obj["error"]
		switch {
		case code == exitOK && isErr:
			t.Fatalf("exit 0 with an error object: %.200s", stdout)
		case code == exitRefused && !knownCodes[errorCode(t, stdout)]:
			t.Fatalf("unknown error code: %.200s", stdout)
		case code != exitOK && code != exitRefused:
			t.Fatalf("exit %d: %.200s", code, stdout)
		}
	})
}

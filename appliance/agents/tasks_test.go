package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

func (e *env) runTask(t testing.TB, req TaskRequest) Task {
	t.Helper()
	if req.Agent == "" {
		req.Agent = "tool"
	}
	if req.Actor == "" {
		req.Actor = testActor
	}
	tk, err := e.s.RunTask(context.Background(), req)
	if err != nil {
		t.Fatalf("run task: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tk, err = e.s.WaitTask(ctx, tk.ID)
	if err != nil {
		t.Fatalf("wait task: %v", err)
	}
	return tk
}

func TestTaskSucceeds(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	var got runtime.ExecSpec
	e.rt.ExecHook = func(ctx context.Context, id string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		got = es
		return FakeEcho(ctx, es, 0)
	}
	tk := e.runTask(t, TaskRequest{Input: json.RawMessage(`{"text": "hello"}`)})
	if tk.State != TaskSucceeded || string(tk.Output) != `{"text": "hello"}` || *tk.ExitCode != 0 || tk.FinishedAt == nil {
		t.Fatalf("task %+v", tk)
	}
	if !slices.Equal(got.Args, []string{"/agent", "task"}) || got.Timeout != 30*time.Second || got.MaxOutput != 1024 {
		t.Errorf("exec spec %+v", got)
	}
	ts, err := e.s.ListTasks(context.Background(), "tool", 10)
	if err != nil || len(ts) != 1 || ts[0].ID != tk.ID {
		t.Errorf("list %v %v", ts, err)
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "uid:1000 agents.task.run tool") {
		t.Errorf("audit %v", acts)
	}
}

func TestTaskOutcomes(t *testing.T) {
	for _, c := range []struct {
		name    string
		hook    func(context.Context, string, runtime.ExecSpec) (runtime.ExecResult, error)
		timeout time.Duration
		state   TaskState
		errHas  string
		trunc   bool
	}{
		{"exit status", func(context.Context, string, runtime.ExecSpec) (runtime.ExecResult, error) {
			return runtime.ExecResult{ExitCode: 3, Stderr: []byte("bad input\x1b[2J")}, nil
		}, 0, TaskFailed, `exit status 3: bad input\x1b[2J`, false},
		{"not json", func(context.Context, string, runtime.ExecSpec) (runtime.ExecResult, error) {
			return runtime.ExecResult{Stdout: []byte("plain text")}, nil
		}, 0, TaskFailed, "not JSON", false},
		{"truncated", func(context.Context, string, runtime.ExecSpec) (runtime.ExecResult, error) {
			return runtime.ExecResult{Stdout: []byte(`{"a": "` + strings.Repeat("x", 1000)), Truncated: true}, nil
		}, 0, TaskSucceeded, "", true},
		{"timeout", func(ctx context.Context, _ string, es runtime.ExecSpec) (runtime.ExecResult, error) {
			return FakeEcho(ctx, es, time.Hour)
		}, 50 * time.Millisecond, TaskTimedOut, "timed out after 50ms", false},
		{"container gone", func(context.Context, string, runtime.ExecSpec) (runtime.ExecResult, error) {
			return runtime.ExecResult{}, runtime.ErrNotFound
		}, 0, TaskFailed, "not running", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.deploy(t, "")
			e.rt.ExecHook = c.hook
			tk := e.runTask(t, TaskRequest{Timeout: c.timeout})
			if tk.State != c.state || !strings.Contains(tk.Error, c.errHas) || tk.Truncated != c.trunc {
				t.Errorf("task %s %q truncated=%v", tk.State, tk.Error, tk.Truncated)
			}
		})
	}
}

func TestTaskCancel(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	started := make(chan struct{})
	e.rt.ExecHook = func(ctx context.Context, _ string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		close(started)
		return FakeEcho(ctx, es, time.Hour)
	}
	ctx := context.Background()
	tk, err := e.s.RunTask(ctx, TaskRequest{Agent: "tool", Actor: testActor})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if _, err := e.s.CancelTask(ctx, tk.ID, "uid:1001"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tk, err = e.s.WaitTask(wctx, tk.ID)
	if err != nil || tk.State != TaskCanceled {
		t.Fatalf("after cancel: %+v %v", tk, err)
	}
	if _, err := e.s.CancelTask(ctx, tk.ID, testActor); !errors.Is(err, ErrConflict) {
		t.Errorf("cancelling a finished task: %v", err)
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "uid:1001 agents.task.cancel tool") {
		t.Errorf("audit %v", acts)
	}
}

func TestTaskIdempotency(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	calls := 0
	e.rt.ExecHook = func(ctx context.Context, _ string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		calls++
		return FakeEcho(ctx, es, 0)
	}
	first := e.runTask(t, TaskRequest{Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-42"})
	again, err := e.s.RunTask(context.Background(), TaskRequest{Agent: "tool", Actor: testActor, Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-42"})
	if err != nil || again.ID != first.ID || again.State != TaskSucceeded {
		t.Fatalf("replay: %+v %v", again, err)
	}
	_, err = e.s.RunTask(context.Background(), TaskRequest{Agent: "tool", Actor: testActor, Input: json.RawMessage(`{"n":2}`), IdempotencyKey: "order-42"})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("same key, other input: %v", err)
	}
	other := e.runTask(t, TaskRequest{Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-43"})
	if other.ID == first.ID || calls != 2 {
		t.Errorf("another key ran %d commands in all", calls)
	}
}

func TestTaskRefusals(t *testing.T) {
	e := newEnv(t, WithTaskLimits(1, 1))
	e.deploy(t, "")
	block := make(chan struct{})
	e.rt.ExecHook = func(ctx context.Context, _ string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		<-block
		return FakeEcho(ctx, es, 0)
	}
	defer close(block)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		req  TaskRequest
		is   error
	}{
		{"no actor", TaskRequest{Agent: "tool"}, ErrInvalid},
		{"bad json", TaskRequest{Agent: "tool", Actor: testActor, Input: json.RawMessage(`{`)}, ErrInvalid},
		{"too large", TaskRequest{Agent: "tool", Actor: testActor, Input: json.RawMessage(`"` + strings.Repeat("x", MaxTaskInput) + `"`)}, ErrInvalid},
		{"bad key", TaskRequest{Agent: "tool", Actor: testActor, IdempotencyKey: "a b"}, ErrInvalid},
		{"timeout too long", TaskRequest{Agent: "tool", Actor: testActor, Timeout: time.Hour}, ErrInvalid},
		{"no agent", TaskRequest{Agent: "nope", Actor: testActor}, ErrNotFound},
	} {
		if _, err := e.s.RunTask(ctx, c.req); !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
		}
	}
	if _, err := e.s.RunTask(ctx, TaskRequest{Agent: "tool", Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.RunTask(ctx, TaskRequest{Agent: "tool", Actor: testActor}); !errors.Is(err, ErrBusy) {
		t.Errorf("over the limit: %v", err)
	}
}

func TestAgentWithoutTasks(t *testing.T) {
	e := newEnv(t)
	m := parseManifest(t, strings.Split(toolYAML, "  tasks:")[0])
	if _, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: m, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	var ie *InvalidError
	if _, err := e.s.RunTask(context.Background(), TaskRequest{Agent: "tool", Actor: testActor}); !errors.As(err, &ie) || !hasPath(ie.Problems, "spec.tasks") {
		t.Errorf("task on an agent without spec.tasks: %v", err)
	}
}

func TestTasksLeftByAPreviousOmertadFail(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	ctx := context.Background()
	err := e.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO tasks (id, agent_id, input_sha256, state, actor, input, timeout_ms, created_at)
 VALUES ('t-old', 'tool', '', 'RUNNING', 'x', ?, 1000, ?)`, []byte("{}"), store.FormatTime(e.clock.Now()))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(e.st, e.rt, WithClock(e.clock.Now), WithStateDir(filepath.Join(e.dir, "agents"))); err != nil {
		t.Fatal(err)
	}
	tk, err := e.s.GetTask(ctx, "t-old")
	if err != nil || tk.State != TaskFailed || !strings.Contains(tk.Error, "omertad stopped") {
		t.Errorf("task left running: %+v %v", tk, err)
	}
}

func TestTaskHistoryIsBounded(t *testing.T) {
	e := newEnv(t)
	e.s.history = 3
	e.deploy(t, "")
	for range 6 {
		e.runTask(t, TaskRequest{})
		e.clock.Advance(time.Second)
	}
	ts, _ := e.s.ListTasks(context.Background(), "tool", 100)
	if len(ts) != 3 {
		t.Errorf("%d tasks kept, want 3", len(ts))
	}
}

func TestCloseCancelsRunningTasks(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	started := make(chan struct{})
	e.rt.ExecHook = func(ctx context.Context, _ string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		close(started)
		return FakeEcho(ctx, es, time.Hour)
	}
	tk, err := e.s.RunTask(context.Background(), TaskRequest{Agent: "tool", Actor: testActor})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	e.s.Close()
	tk, _ = e.s.GetTask(context.Background(), tk.ID)
	if tk.State != TaskCanceled || !strings.Contains(tk.Error, "omertad stopped") {
		t.Errorf("after Close: %+v", tk)
	}
	if _, err := e.s.RunTask(context.Background(), TaskRequest{Agent: "tool", Actor: testActor}); !errors.Is(err, ErrBusy) {
		t.Errorf("a task after Close: %v", err)
	}
}

package agents

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

// Bounds on tasks.
const (
	// MaxTaskInput bounds a task's JSON input.
	MaxTaskInput = 1 << 20
	maxTaskError = 4 << 10
	// MaxTaskList bounds ListTasks.
	MaxTaskList = 1000
)

var keyRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

var (
	errTaskCanceled = errors.New("canceled on request")
	errShutdown     = errors.New("omertad stopped before the task finished")
)

// taskRunner tracks the tasks running in this process.
type taskRunner struct {
	mu       sync.Mutex
	ctx      context.Context
	cancel   context.CancelCauseFunc
	wg       sync.WaitGroup
	running  map[string]context.CancelCauseFunc
	perAgent map[string]int
	total    int
}

func (r *taskRunner) init() {
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	r.running, r.perAgent = map[string]context.CancelCauseFunc{}, map[string]int{}
}

// reserve takes a slot for a task of agent, within the bounds; stop waits
// for every slot taken to be released.
func (r *taskRunner) reserve(agent string, total, perAgent int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil || r.total >= total || r.perAgent[agent] >= perAgent {
		return false
	}
	r.total++
	r.perAgent[agent]++
	r.wg.Add(1)
	return true
}

func (r *taskRunner) release(agent string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.perAgent[agent]--; r.perAgent[agent] <= 0 {
		delete(r.perAgent, agent)
	}
	r.wg.Done()
}

func (r *taskRunner) register(id string, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[id] = cancel
}

func (r *taskRunner) unregister(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, id)
}

// cancelTask cancels a task running here; it reports whether one was.
func (r *taskRunner) cancelTask(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.running[id]
	if ok {
		c(errTaskCanceled)
	}
	return ok
}

// stop cancels every task and waits for them to record their end. Under
// the mutex, so that no reserve adds to the group once Wait has begun.
func (r *taskRunner) stop() {
	r.mu.Lock()
	r.cancel(errShutdown)
	r.mu.Unlock()
	r.wg.Wait()
}

// checkTaskRequest validates a request and returns its input.
func checkTaskRequest(req TaskRequest) (json.RawMessage, error) {
	if err := errors.Join(checkActor(req.Actor), checkID("agent", req.Agent)); err != nil {
		return nil, err
	}
	if req.IdempotencyKey != "" && !keyRe.MatchString(req.IdempotencyKey) {
		return nil, invalid("idempotencyKey", manifest.CodeInvalid, "1 to 128 of letters, digits and . _ : -")
	}
	if req.Timeout < 0 {
		return nil, invalid("timeout", manifest.CodeRange, "negative")
	}
	in := bytes.TrimSpace(req.Input)
	if len(in) == 0 {
		in = []byte("{}")
	}
	if len(in) > MaxTaskInput {
		return nil, invalid("input", manifest.CodeRange, "%d bytes; at most %d", len(in), MaxTaskInput)
	}
	if !json.Valid(in) {
		return nil, invalid("input", manifest.CodeSyntax, "is not JSON")
	}
	return in, nil
}

// RunTask starts a task in the agent's running container: spec.tasks's
// command, the input on its stdin, its stdout the output. It returns the
// task as recorded (PENDING) and runs it in the background; WaitTask waits
// for its end. With an idempotency key already used for this agent it
// returns that task (ErrConflict if its input differs) and runs nothing.
func (s *Service) RunTask(ctx context.Context, req TaskRequest) (Task, error) {
	in, err := checkTaskRequest(req)
	if err != nil {
		return Task{}, err
	}
	row, err := loadAgent(ctx, s.st.Read(), req.Agent)
	if err != nil {
		return Task{}, err
	}
	if row.Desired != DesiredEnabled || row.St.State != StateRunning {
		return Task{}, fmt.Errorf("agent %s: %w: it is %s (%s), not running", quote(row.ID), ErrConflict, row.St.State, row.Desired)
	}
	m, err := s.cachedManifest(ctx, row.ID, row.Gen)
	if err != nil {
		return Task{}, err
	}
	spec := m.Spec.Tasks
	if spec == nil {
		return Task{}, invalid("spec.tasks", manifest.CodeRequired, "agent %s runs no tasks", quote(row.ID))
	}
	timeout := spec.Timeout.D()
	if req.Timeout > 0 {
		if req.Timeout > timeout {
			return Task{}, invalid("timeout", manifest.CodeRange, "%s is longer than the agent's spec.tasks.timeout (%s)", req.Timeout, timeout)
		}
		timeout = req.Timeout
	}
	sum := sha256.Sum256(in)
	t := Task{ID: newID("t-"), Agent: row.ID, IdempotencyKey: req.IdempotencyKey, State: TaskPending, Actor: req.Actor,
		Input: in, Timeout: timeout, CreatedAt: s.now().UTC()}
	if prev, ok, err := s.replay(ctx, t, hex.EncodeToString(sum[:])); ok || err != nil {
		return prev, err
	}
	if !s.tasks.reserve(row.ID, s.maxTasks, s.perAgent) {
		return Task{}, fmt.Errorf("agent %s: %w (at most %d in all, %d per agent)", quote(row.ID), ErrBusy, s.maxTasks, s.perAgent)
	}
	// After the reservation: a task refused as busy takes nothing from
	// the agent's rate.
	if err := s.allowTask(row, m); err != nil {
		s.tasks.release(row.ID)
		return Task{}, err
	}
	if err := s.insertTask(ctx, t, hex.EncodeToString(sum[:])); err != nil {
		s.tasks.release(row.ID)
		if store.IsUnique(err) {
			prev, _, err := s.replay(ctx, t, hex.EncodeToString(sum[:]))
			return prev, err
		}
		return Task{}, err
	}
	s.taskEvent(t)
	go s.runTask(t, containerID(row.ID, row.Gen), *spec)
	return t, nil
}

// replay finds the task an idempotency key already names.
func (s *Service) replay(ctx context.Context, t Task, sum string) (Task, bool, error) {
	if t.IdempotencyKey == "" {
		return Task{}, false, nil
	}
	var id, prevSum string
	err := s.st.Read().QueryRowContext(ctx, "SELECT id, input_sha256 FROM tasks WHERE agent_id = ? AND idempotency_key = ?",
		t.Agent, t.IdempotencyKey).Scan(&id, &prevSum)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, false, nil
	}
	if err != nil {
		return Task{}, false, fmt.Errorf("looking up an idempotency key: %w", err)
	}
	if prevSum != sum {
		return Task{}, true, fmt.Errorf("idempotency key %s: %w: task %s had another input", quote(t.IdempotencyKey), ErrConflict, id)
	}
	prev, err := s.GetTask(ctx, id)
	return prev, true, err
}

func (s *Service) insertTask(ctx context.Context, t Task, sum string) error {
	var key any
	if t.IdempotencyKey != "" {
		key = t.IdempotencyKey
	}
	return s.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tasks (id, agent_id, idempotency_key, input_sha256, state, actor, input,
 timeout_ms, created_at) VALUES (?,?,?,?,?,?,?,?,?)`,
			t.ID, t.Agent, key, sum, string(t.State), t.Actor, []byte(t.Input), t.Timeout.Milliseconds(), store.FormatTime(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("recording task: %w", err)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM tasks WHERE agent_id = ? AND state NOT IN ('PENDING', 'RUNNING')
 AND id NOT IN (SELECT id FROM tasks WHERE agent_id = ? ORDER BY created_at DESC LIMIT ?)`, t.Agent, t.Agent, s.history)
		if err != nil {
			return fmt.Errorf("pruning old tasks: %w", err)
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: t.Actor, Action: "agents.task.run", Target: t.Agent,
			Detail: map[string]any{"task": t.ID, "idempotency_key": t.IdempotencyKey, "timeout_ms": t.Timeout.Milliseconds(),
				"input_bytes": len(t.Input)}})
	})
}

// runTask runs one task to its end and records it.
func (s *Service) runTask(t Task, cid string, spec manifest.Tasks) {
	defer s.tasks.release(t.Agent)
	ctx, cancel := context.WithCancelCause(s.tasks.ctx)
	defer cancel(nil)
	s.tasks.register(t.ID, cancel)
	defer s.tasks.unregister(t.ID)
	// The store must still answer while the task is being cancelled.
	dbctx := context.WithoutCancel(ctx)
	started := s.now().UTC()
	ok, err := s.moveTask(dbctx, t.ID, TaskPending, "state = 'RUNNING', started_at = ?", store.FormatTime(started))
	if !ok || err != nil {
		if err != nil {
			s.log.Warn("agents: starting a task", "task", t.ID, "err", err)
		}
		return // cancelled before it began
	}
	t.State, t.StartedAt = TaskRunning, &started
	s.taskEvent(t)
	res, err := s.rt.Exec(ctx, cid, runtime.ExecSpec{Args: spec.Command, Env: []string{"OMERTA_TASK_ID=" + t.ID},
		Stdin: bytes.NewReader(t.Input), Timeout: t.Timeout, MaxOutput: spec.MaxOutputBytes()})
	s.finishTask(dbctx, t, res, err, context.Cause(ctx))
}

// finishTask classifies the end of a task and records it.
func (s *Service) finishTask(ctx context.Context, t Task, res runtime.ExecResult, err, cause error) {
	t.State, t.Error = TaskSucceeded, ""
	switch {
	case errors.Is(cause, errTaskCanceled), errors.Is(cause, errShutdown):
		t.State, t.Error = TaskCanceled, cause.Error()
	case errors.Is(err, runtime.ErrTimeout):
		t.State, t.Error = TaskTimedOut, fmt.Sprintf("timed out after %s", t.Timeout)
	case errors.Is(err, runtime.ErrNotFound):
		t.State, t.Error = TaskFailed, "the agent's container is not running"
	case err != nil:
		t.State, t.Error = TaskFailed, oneLine(err.Error(), maxTaskError)
	default:
		code := int64(res.ExitCode)
		t.ExitCode = &code
		if code != 0 {
			t.State, t.Error = TaskFailed, oneLine(fmt.Sprintf("exit status %d: %s", code, bytes.TrimSpace(res.Stderr)), maxTaskError)
		} else if !res.Truncated && !json.Valid(res.Stdout) {
			t.State, t.Error = TaskFailed, "the task's output is not JSON"
		}
	}
	t.Output, t.Truncated = res.Stdout, res.Truncated
	fin := s.now().UTC()
	t.FinishedAt = &fin
	ok, werr := s.moveTask(ctx, t.ID, TaskRunning, "state = ?, output = ?, truncated = ?, exit_code = ?, error = ?, finished_at = ?",
		string(t.State), t.Output, t.Truncated, nullInt(t.ExitCode), t.Error, store.FormatTime(fin))
	if werr != nil {
		s.log.Warn("agents: recording a task's end", "task", t.ID, "err", werr)
		return
	}
	if ok {
		s.taskEvent(t)
	}
}

// moveTask applies set to a task that is in state from; it reports
// whether it was.
func (s *Service) moveTask(ctx context.Context, id string, from TaskState, set string, args ...any) (bool, error) {
	var n int64
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE tasks SET "+set+" WHERE id = ? AND state = ?", append(args, id, string(from))...)
		if err != nil {
			return fmt.Errorf("updating task %s: %w", id, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}

func (s *Service) taskEvent(t Task) {
	s.met.tasks.WithLabelValues(string(t.State)).Inc()
	s.publish(Event{Type: EventTask, Agent: t.Agent, Task: t.ID, Data: TaskData{State: t.State, ExitCode: t.ExitCode, Error: t.Error}})
}

// CancelTask cancels a pending or running task; it ends CANCELED (the
// command is killed). The task is returned as it is once cancelled (a
// running one may still be RUNNING; WaitTask waits for its end).
func (s *Service) CancelTask(ctx context.Context, id, actor string) (Task, error) {
	if err := checkActor(actor); err != nil {
		return Task{}, err
	}
	t, err := s.GetTask(ctx, id)
	if err != nil {
		return Task{}, err
	}
	if t.State.Final() {
		return t, fmt.Errorf("task %s: %w: it is %s", quote(id), ErrConflict, t.State)
	}
	err = s.st.Audit(ctx, store.AuditEntry{Actor: actor, Action: "agents.task.cancel", Target: t.Agent,
		Detail: map[string]any{"task": id}})
	if err != nil {
		return Task{}, err
	}
	if !s.tasks.cancelTask(id) {
		fin := s.now().UTC()
		ok, err := s.moveTask(ctx, id, TaskPending, "state = 'CANCELED', error = ?, finished_at = ?", errTaskCanceled.Error(), store.FormatTime(fin))
		if err != nil {
			return Task{}, err
		}
		if ok {
			t.State, t.Error, t.FinishedAt = TaskCanceled, errTaskCanceled.Error(), &fin
			s.taskEvent(t)
		}
	}
	return s.GetTask(ctx, id)
}

// WaitTask waits until the task has ended (or ctx ends) and returns it.
func (s *Service) WaitTask(ctx context.Context, id string) (Task, error) {
	sub := s.bus.Subscribe(ctx, Filter{Types: []EventType{EventTask}, Task: id})
	defer sub.Close()
	for {
		t, err := s.GetTask(ctx, id)
		if err != nil || t.State.Final() {
			return t, err
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-sub.C:
		case <-time.After(250 * time.Millisecond):
		}
	}
}

const selectTasks = `SELECT id, agent_id, idempotency_key, state, actor, input, output, truncated, exit_code, error,
 timeout_ms, created_at, started_at, finished_at FROM tasks`

// GetTask returns one task.
func (s *Service) GetTask(ctx context.Context, id string) (Task, error) {
	ts, err := s.queryTasks(ctx, selectTasks+" WHERE id = ?", id)
	if err != nil {
		return Task{}, err
	}
	if len(ts) == 0 {
		return Task{}, fmt.Errorf("task %s: %w", quote(id), ErrNotFound)
	}
	return ts[0], nil
}

// ListTasks returns an agent's tasks, newest first, at most limit (1 to
// MaxTaskList; 0 means 100).
func (s *Service) ListTasks(ctx context.Context, agent string, limit int) ([]Task, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxTaskList)
	return s.queryTasks(ctx, selectTasks+" WHERE agent_id = ? ORDER BY created_at DESC, id LIMIT ?", agent, limit)
}

func (s *Service) queryTasks(ctx context.Context, q string, args ...any) ([]Task, error) {
	rows, err := s.st.Read().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading tasks: %w", err)
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func scanTask(rows *sql.Rows) (Task, error) {
	var t Task
	var key, started, finished sql.NullString
	var exit sql.NullInt64
	var created string
	var timeoutMS int64
	var input []byte
	err := rows.Scan(&t.ID, &t.Agent, &key, &t.State, &t.Actor, &input, &t.Output, &t.Truncated, &exit, &t.Error,
		&timeoutMS, &created, &started, &finished)
	if err != nil {
		return t, fmt.Errorf("reading tasks: %w", err)
	}
	t.IdempotencyKey, t.Input, t.Timeout = key.String, json.RawMessage(input), time.Duration(timeoutMS)*time.Millisecond
	if exit.Valid {
		t.ExitCode = &exit.Int64
	}
	c, err1 := store.ParseTime("tasks", "created_at", created)
	st, err2 := store.ParseNullTime("tasks", "started_at", started)
	fi, err3 := store.ParseNullTime("tasks", "finished_at", finished)
	if err := errors.Join(err1, err2, err3); err != nil {
		return t, fmt.Errorf("reading task %s: %w", t.ID, err)
	}
	t.CreatedAt, t.StartedAt, t.FinishedAt = c, timePtr(st), timePtr(fi)
	return t, nil
}

// failInterruptedTasks ends the tasks a previous omertad left unfinished:
// their processes' output went with it.
func (s *Service) failInterruptedTasks(ctx context.Context) error {
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'FAILED', error = ?, finished_at = ?
 WHERE state IN ('PENDING', 'RUNNING')`, "omertad stopped before the task finished", store.FormatTime(s.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("agents: ending the tasks a previous omertad left: %w", err)
	}
	return nil
}

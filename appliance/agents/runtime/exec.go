package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Exec bounds.
const (
	DefaultExecTimeout = time.Minute
	DefaultMaxOutput   = 1 << 20
	MaxOutputCap       = 64 << 20
	// ioGrace is how long output may still drain after the process
	// exited: a child it left behind may hold its stdout open forever.
	ioGrace = 2 * time.Second
)

// ExecSpec is one command to run in a running container, as the
// container's user, with its capabilities (none) and its seccomp profile.
type ExecSpec struct {
	Args []string
	// Env is added to the container's environment.
	Env   []string
	Stdin io.Reader
	// Timeout (default 1 min) kills the command when it runs longer.
	Timeout time.Duration
	// MaxOutput bounds each of stdout and stderr (default 1 MiB, at most
	// 64 MiB); the rest is read and discarded.
	MaxOutput int64
}

// ExecResult is what the command produced.
type ExecResult struct {
	ExitCode  uint32
	Stdout    []byte
	Stderr    []byte
	Truncated bool
	Duration  time.Duration
}

func (e *ExecSpec) normalize() error {
	if len(e.Args) == 0 {
		return invalid("args", "empty")
	}
	for i, a := range e.Args {
		if strings.ContainsRune(a, 0) {
			return invalid(fmt.Sprintf("args[%d]", i), "contains a NUL byte")
		}
	}
	for i, v := range e.Env {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" || strings.ContainsRune(v, 0) {
			return invalid(fmt.Sprintf("env[%d]", i), "%q is not KEY=VALUE", v)
		}
	}
	if e.Timeout < 0 || e.MaxOutput < 0 || e.MaxOutput > MaxOutputCap {
		return invalid("timeout/maxOutput", "timeout %v, max output %d: out of range", e.Timeout, e.MaxOutput)
	}
	if e.Timeout == 0 {
		e.Timeout = DefaultExecTimeout
	}
	if e.MaxOutput == 0 {
		e.MaxOutput = DefaultMaxOutput
	}
	return nil
}

// Exec runs a command in the container's task and waits for it. When the
// timeout passes the command is killed and the error wraps ErrTimeout;
// when ctx is cancelled it is killed and the error wraps ctx's. The
// result holds what was read either way.
func (r *Runtime) Exec(ctx context.Context, id string, es ExecSpec) (ExecResult, error) {
	if err := validateID(id); err != nil {
		return ExecResult{}, err
	}
	if err := es.normalize(); err != nil {
		return ExecResult{}, err
	}
	ctx = r.ctx(ctx)
	ctr, err := r.c.LoadContainer(ctx, id)
	if err != nil {
		return ExecResult{}, wrap("exec in "+quote(id), err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return ExecResult{}, wrap("exec in "+quote(id), err)
	}
	spec, err := containerSpec(ctx, ctr)
	if err != nil {
		return ExecResult{}, wrap("exec in "+quote(id), err)
	}
	pspec := *spec.Process
	pspec.Args = es.Args
	pspec.Env = mergeEnv(spec.Process.Env, es.Env)
	pspec.Terminal = false
	stdout, stderr := &boundedBuffer{max: es.MaxOutput}, &boundedBuffer{max: es.MaxOutput}
	start := r.now()
	code, err := r.runExec(ctx, task, &pspec, es, stdout, stderr)
	res := ExecResult{ExitCode: code, Stdout: stdout.Bytes(), Stderr: stderr.Bytes(),
		Truncated: stdout.Truncated() || stderr.Truncated(), Duration: r.now().Sub(start)}
	if err != nil {
		return res, fmt.Errorf("exec in %s: %w", quote(id), err)
	}
	return res, nil
}

func (r *Runtime) runExec(ctx context.Context, task client.Task, spec *specs.Process, es ExecSpec, stdout, stderr io.Writer) (uint32, error) {
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	var stdin *eofReader
	var in io.Reader
	if es.Stdin != nil {
		stdin = &eofReader{r: es.Stdin, eof: make(chan struct{})}
		in = stdin
	}
	ioc := cio.NewCreator(cio.WithStreams(in, stdout, stderr), cio.WithFIFODir(r.fifoDir()))
	p, err := task.Exec(ctx, execID, spec, ioc)
	if err != nil {
		return 0, notRunning(ctx, task, wrap("creating the process", err))
	}
	defer func() {
		dctx, cancel := cleanupCtx(ctx)
		defer cancel()
		p.Delete(dctx)
	}()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	exited, err := p.Wait(wctx)
	if err != nil {
		return 0, wrap("waiting for the process", err)
	}
	if err := p.Start(ctx); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStartFailed, err)
	}
	if stdin != nil {
		stop := make(chan struct{})
		defer close(stop)
		go closeStdinAtEOF(wctx, p, stdin.eof, stop)
	}
	timer := time.NewTimer(es.Timeout)
	defer timer.Stop()
	var why error
	select {
	case st := <-exited:
		drain(p.IO())
		code, _, err := st.Result()
		return code, err
	case <-timer.C:
		why = fmt.Errorf("%w after %v", ErrTimeout, es.Timeout)
	case <-ctx.Done():
		why = ctx.Err()
	}
	kctx, kcancel := cleanupCtx(ctx)
	defer kcancel()
	if err := p.Kill(kctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return 0, errors.Join(why, wrap("killing the process", err))
	}
	select {
	case st := <-exited:
		drain(p.IO())
		return st.ExitCode(), why
	case <-kctx.Done():
		return 0, errors.Join(why, errors.New("the killed process did not exit"))
	}
}

// drain waits for the output copy to end, but not forever: a process the
// command left behind may keep the pipes open.
func drain(io cio.IO) {
	done := make(chan struct{})
	go func() { io.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ioGrace):
		io.Cancel()
	}
}

func newExecID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "exec-" + hex.EncodeToString(b), nil
}

// boundedBuffer keeps the first max bytes written and counts the rest: the
// command must never block on a full pipe, so nothing is refused.
type boundedBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int64
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - int64(len(b.buf))
	if room < int64(len(p)) {
		b.truncated = true
		if room > 0 {
			b.buf = append(b.buf, p[:room]...)
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *boundedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

func (b *boundedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}

// containerSpec decodes the spec from the metadata LoadContainer already
// fetched (ctr.Spec would ask containerd again).
func containerSpec(ctx context.Context, ctr client.Container) (*oci.Spec, error) {
	info, err := ctr.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return nil, err
	}
	if info.Spec == nil {
		return nil, fmt.Errorf("%w: the container has no spec", ErrInvalid)
	}
	var s oci.Spec
	if err := json.Unmarshal(info.Spec.GetValue(), &s); err != nil {
		return nil, fmt.Errorf("decoding the container's spec: %w", err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("%w: the container's spec has no process", ErrInvalid)
	}
	return &s, nil
}

// eofReader reports when its reader is exhausted. io.Copy calls Read again
// only once it has written what the previous Read returned, so at that
// point all of stdin is in the FIFO.
type eofReader struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// closeStdinAtEOF closes the process's stdin once all of it was written:
// the shim holds the FIFO open for writing itself, so the process sees EOF
// only when told. stop ends the wait when the process is gone first.
func closeStdinAtEOF(ctx context.Context, p client.Process, eof, stop <-chan struct{}) {
	select {
	case <-eof:
		p.CloseIO(ctx, client.WithStdinCloser)
	case <-stop:
	}
}

// notRunning adds ErrState to an exec that failed because the task is not
// running (the shim says so only in words); it asks only on this path.
func notRunning(ctx context.Context, task client.Task, err error) error {
	if st, serr := task.Status(ctx); serr == nil && st.Status != client.Running && !errors.Is(err, ErrState) {
		return fmt.Errorf("%w: the task is %s: %w", ErrState, st.Status, err)
	}
	return err
}

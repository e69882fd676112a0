// Command tool is the OMERTAOS sample tool agent. Its container idles under
// "/agent serve" and the runtime runs each task with "/agent task" through
// task.Exec: the task is one JSON object on standard input, the result one
// JSON object on standard output.
//
// Exit status: 0 for a result, 2 for a refused task (the error object names
// the code and the field), 1 when the agent itself failed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/image/agents/tool/ops"
)

const usage = `usage: /agent serve   wait for SIGTERM (the container's long-running process)
       /agent task    run one task: JSON on standard input, JSON on standard output
operations: extract, summarize, transform, inspect`

// version is stamped by scripts/agentimage (-X main.version=...).
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1
	exitRefused = 2
)

func main() {
	// PID 1 in a container ignores SIGTERM unless it installs a handler;
	// NotifyContext installs one.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, ops.DefaultEnv, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run takes the sandbox view (env) as a parameter so that tests can point
// the inspect op at a temp dir.
func run(ctx context.Context, env ops.Env, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, usage)
		return exitRefused
	}
	switch args[0] {
	case "serve":
		return serve(ctx, stderr)
	case "task":
		return task(env, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "tool agent: unknown command %q\n%s\n", args[0], usage)
	return exitRefused
}

func serve(ctx context.Context, stderr io.Writer) int {
	fmt.Fprintf(stderr, "tool agent %s: ready (pid %d); tasks run with \"/agent task\"\n", version, os.Getpid())
	<-ctx.Done()
	fmt.Fprintln(stderr, "tool agent: stopping")
	return exitOK
}

func task(env ops.Env, stdin io.Reader, stdout, stderr io.Writer) int {
	input, err := safeio.ReadAll(stdin, "standard input", ops.MaxInput)
	if err != nil {
		var le *safeio.LimitError
		if errors.As(err, &le) {
			return fail(stdout, stderr, &ops.Error{Code: ops.CodeInputTooLarge, Message: fmt.Sprintf("the task input is larger than %d bytes", ops.MaxInput)})
		}
		return fail(stdout, stderr, &ops.Error{Code: ops.CodeInternal, Message: err.Error()})
	}
	out, err := ops.Run(env, input)
	if err != nil {
		return fail(stdout, stderr, ops.AsError(err))
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "tool agent: writing the result: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// fail writes the error object on standard output (where the runtime reads
// results) and a one-line note on standard error (the agent's log). The
// message may quote the input; %q keeps it on one line and escaped.
func fail(stdout, stderr io.Writer, e *ops.Error) int {
	body, err := json.Marshal(ops.ErrorBody{Error: e})
	if err != nil {
		body = []byte(`{"error":{"code":"internal","message":"encoding the error failed"}}`)
	}
	stdout.Write(append(body, '\n'))
	fmt.Fprintf(stderr, "tool agent: task refused: %q\n", e.Error())
	if e.Code == ops.CodeInternal {
		return exitFailed
	}
	return exitRefused
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/omertaos/omertaos/appliance/terminal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(1)
	}
}

// printError writes the one line a failure ends with. Errors carry paths,
// parser messages and omertad's words: escaped, none of them can rewrite
// the terminal or forge a second journal line.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "omerta-console:", terminal.Escape(err.Error()))
}

// run parses args as the command line and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

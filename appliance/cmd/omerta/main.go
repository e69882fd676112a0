// Command omerta is the one binary of the OMERTAOS appliance: the daemon,
// first boot, the probe, hardening and the report tools are its subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// subcommands are registered by each command's file in init, so that each
// command lives beside its flags and nothing else needs editing to add one.
var subcommands []func() *cobra.Command

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		var ec exitCode
		if asExit(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "omerta:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	root := newRootCmd()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "omerta",
		Short: "OMERTAOS appliance: daemon, first boot, hardware probe, hardening and reports",
		Long: `omerta is the single binary of the OMERTAOS appliance.

The daemon (omertad) keeps state and runs agents; first boot probes the
hardware, hardens the system and writes a signed report; the other commands
inspect and verify.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

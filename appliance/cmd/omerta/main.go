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

	"github.com/omertaos/omertaos/appliance/terminal"
)

// commands is every subcommand, in the order --help lists them: one
// explicit list, so what the binary can do is read in one place rather than
// assembled from init functions in file-name order.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newDaemonCmd(),
		newFirstbootCmd(),
		newProbeCmd(),
		newHardenCmd(),
		newReportCmd(),
		newCatalogCmd(),
		newRegistryCmd(),
		newImageCmd(),
		newAgentsCmd(),
		newGPUCmd(),
		newPolicyCmd(),
		newTenantCmd(),
		newConsoleCmd(),
		newVersionCmd(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		var ec exitCode
		if asExit(err, &ec) {
			os.Exit(int(ec))
		}
		// Errors carry paths, parser messages and servers' words: escaped,
		// none of them can rewrite the terminal.
		fmt.Fprintln(os.Stderr, "omerta:", terminal.Escape(err.Error()))
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
	root.AddCommand(commands()...)
	return root
}

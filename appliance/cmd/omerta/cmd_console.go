package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newConsoleCmd is listed in main.go's commands.

// errConsoleMoved is what `omerta console` answers. The console is its own
// binary, omerta-console (appliance/cmd/omerta-console): the
// network-facing process must not map containerd's client, SQLite and NVML,
// which this binary links for omertad. The command stays, hidden, so that
// an old unit, script or habit is told where the console went instead of
// "unknown command".
var errConsoleMoved = errors.New("the web console is its own binary now: run omerta-console " +
	"(/usr/bin/omerta-console, started by omerta-console.service) with the same flags")

func newConsoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "console",
		Short:  "Moved: the web console is omerta-console",
		Hidden: true,
		// Any flags the old command took are accepted, so the answer is
		// where the console went, not "unknown flag".
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errConsoleMoved
		},
	}
}

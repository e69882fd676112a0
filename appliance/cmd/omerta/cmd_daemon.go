package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
)

func init() { subcommands = append(subcommands, newDaemonCmd) }

// daemonServices are the domains that run inside omertad; each domain's
// command file adds its factory here.
var daemonServices []daemon.ServiceFactory

func newDaemonCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run omertad: the state database, the internal API on a unix socket, and the appliance's services",
		Long: `Run omertad, the appliance daemon.

It reads the site configuration (default /etc/omerta/omerta.yaml; a missing
default file means built-in defaults, a missing --config file is an error),
opens the SQLite state in daemon.state_dir, serves the internal JSON API on
the unix socket daemon.socket (mode 0660), and reports READY, STATUS, WATCHDOG
and STOPPING to systemd. SIGTERM stops it gracefully within
daemon.shutdown_timeout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if errors.Is(err, config.ErrNotFound) && !cmd.Flags().Changed("config") {
				err = nil
			}
			if err != nil {
				return err
			}
			log := newLogger(cfg.Daemon.LogLevel)
			if err := daemon.Run(cmd.Context(), cfg, log, daemon.WithServices(daemonServices...)); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", config.DefaultPath, "site configuration file")
	return cmd
}

// newLogger logs to stderr as key=value text. Under systemd (JOURNAL_STREAM
// set) the timestamp is dropped, since journald stamps every line itself.
func newLogger(level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

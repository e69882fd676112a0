package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot"
)

func init() { subcommands = append(subcommands, newDaemonCmd) }

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
			if err := daemon.Run(cmd.Context(), cfg, log,
				daemon.WithSchemas(daemonSchemas...), daemon.WithWiring(wireDaemon)); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", config.DefaultPath, "site configuration file")
	return cmd
}

// daemonSchemas are the domains' tables in omertad's database. Every table
// the daemon or its API reads is listed, first boot's included: the console
// shows its progress through omertad.
var daemonSchemas = []store.Schema{probe.Schema, firstboot.Schema}

// wireDaemon is the one list of what runs inside omertad and what its API
// serves from, built once the store is open. A new domain adds its service
// and its API handle here, nowhere else.
func wireDaemon(d daemon.Deps) (daemon.Wiring, error) {
	mon := newProbeMonitor(d)
	return daemon.Wiring{
		Services: []daemon.Service{mon},
		API:      api.Deps{Probe: mon},
	}, nil
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

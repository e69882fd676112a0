package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot"
)

func newDaemonCmd() *cobra.Command {
	var configPath, firstbootRoot string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run omertad: the state database, the internal API on a unix socket, and the appliance's services",
		Long: `Run omertad, the appliance daemon.

It reads the site configuration (default /etc/omerta/omerta.yaml; a missing
default file means built-in defaults, a missing --config file is an error),
opens the SQLite state in daemon.state_dir, serves the internal JSON API on
the unix socket daemon.socket (mode 0660), and reports READY, STATUS, WATCHDOG
and STOPPING to systemd. SIGTERM stops it gracefully within
daemon.shutdown_timeout.

--firstboot-root names the root directory first boot ran in (default /):
omertad redeems the setup token and serves the first-boot report from
there. Only development and tests set it, to run omertad beside a first
boot made with 'omerta firstboot --root DIR'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if errors.Is(err, config.ErrNotFound) && !cmd.Flags().Changed("config") {
				err = nil
			}
			if err != nil {
				return err
			}
			fbRoot, err := rootfs.New(firstbootRoot)
			if err != nil {
				return fmt.Errorf("--firstboot-root: %w", err)
			}
			log := newLogger(cfg.Daemon.LogLevel)
			if err := daemon.Run(cmd.Context(), cfg, log,
				daemon.WithSchemas(daemonSchemas...), daemon.WithWiring(wireDaemon(fbRoot))); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", config.DefaultPath, "site configuration file")
	cmd.Flags().StringVar(&firstbootRoot, "firstboot-root", "/", "root directory first boot ran in (development and tests)")
	return cmd
}

// daemonSchemas are the domains' tables in omertad's database. Every table
// the daemon or its API reads is listed, first boot's included: the console
// shows its progress through omertad.
var daemonSchemas = append([]store.Schema{probe.Schema, firstboot.Schema, auth.Schema, policy.Schema}, agentSchemas...)

// wireDaemon is the one list of what runs inside omertad and what its API
// serves from, built once the store is open. A new domain adds its service
// and its API handle here, nowhere else. fb is the root first boot ran in:
// "/" on the appliance.
func wireDaemon(fb rootfs.Root) func(daemon.Deps) (daemon.Wiring, error) {
	return func(d daemon.Deps) (daemon.Wiring, error) {
		mon := newProbeMonitor(d)
		// ag.policy admits the agents' deploys and patches; the API's
		// policy routes serve from it too.
		ag, err := wireAgents(d)
		if err != nil {
			return daemon.Wiring{}, err
		}
		// Setup redeems the token first boot wrote under fb.
		users, err := auth.New(auth.Options{Store: d.Store, RedeemSetupToken: auth.FirstbootRedeemer(fb.Dir()), Now: d.Now})
		if err != nil {
			return daemon.Wiring{}, fmt.Errorf("auth: %w", err)
		}
		reportFiles := api.ReportFiles{Root: fb, ReportPath: firstboot.ReportPath, PublicKeyPath: firstboot.SigningPubPath}
		return daemon.Wiring{
			Services: append([]daemon.Service{mon, authPurger{svc: users, log: d.Logger.With("service", "auth-purge")}}, ag.services...),
			API:      api.Deps{Probe: mon, Agents: ag.api, Policy: ag.policy, GPU: ag.gpu, Models: ag.models, AgentUI: ag.ui, Auth: users, Report: reportFiles},
		}, nil
	}
}

// authPurgeInterval is how often expired sessions and reset links are
// deleted; until then an expired one is refused all the same.
const authPurgeInterval = time.Hour

// authPurger keeps the auth tables small. A failed purge is logged, not
// fatal: nothing depends on it but the tables' size.
type authPurger struct {
	svc *auth.Service
	log *slog.Logger
}

func (authPurger) Name() string { return "auth-purge" }

func (p authPurger) Run(ctx context.Context) error {
	t := time.NewTicker(authPurgeInterval)
	defer t.Stop()
	for {
		if n, err := p.svc.PurgeExpired(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("purging expired sessions", "err", err)
		} else if n > 0 {
			p.log.Debug("purged expired sessions and reset links", "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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

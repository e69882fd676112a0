package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/version"
	"github.com/omertaos/omertaos/ui"
)

// options are the command line's flags.
type options struct {
	socket    string
	listen    string
	cert, key string
	devCert   string
	allowRoot bool
	logLevel  string
}

// Credentials systemd hands the service (LoadCredential= in
// omerta-console.service): the device certificate and its key, readable
// by the service's user alone, while the files stay root's.
const (
	credCert = "tls.crt"
	credKey  = "tls.key"
)

// ErrRoot is returned when the console is started as root without
// --allow-root.
var ErrRoot = errors.New("refusing to run as root: the network-facing console runs as its own user " +
	"(omerta-console, see omerta-console.service); --allow-root is for development only")

func newRootCmd() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "omerta-console",
		Short: "Serve the web console over HTTPS, in front of omertad's API",
		Long: `Serve the web console: HTTPS only (TLS 1.2 and 1.3), the pages, and
/api/v1 forwarded to omertad's unix socket for an allow-list of routes.
omertad decides every call from the session or API token it carries.

The listener comes from systemd (omerta-console.socket, port 443) when
LISTEN_FDS is set, else --listen. The certificate is the device's, made at
first boot: from systemd's credentials (tls.crt, tls.key in
$CREDENTIALS_DIRECTORY) when set, else --cert and --key. --dev-cert DIR
makes a self-signed certificate for 127.0.0.1 and localhost instead, for
development, and prints its fingerprint.

It runs as an unprivileged user (omerta-console) and refuses to run as
root unless --allow-root is given (development and tests only).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConsole(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	info := version.Get()
	cmd.SetVersionTemplate(fmt.Sprintf("omerta-console %s (commit %s, %s)\n", info.Version, info.Commit, info.GoVersion))
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", "", "omertad's API socket (default: daemon.socket of "+config.DefaultPath+", else "+config.Default().Daemon.Socket+")")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to listen on when systemd passes no socket")
	f.StringVar(&o.cert, "cert", "", "TLS certificate, PEM (default: $CREDENTIALS_DIRECTORY/"+credCert+", else "+tlsCertPath+")")
	f.StringVar(&o.key, "key", "", "TLS key, PEM (default: $CREDENTIALS_DIRECTORY/"+credKey+", else "+tlsKeyPath+")")
	f.StringVar(&o.devCert, "dev-cert", "", "make (or keep) a self-signed development certificate in this directory and use it")
	f.BoolVar(&o.allowRoot, "allow-root", false, "run even as root (development and tests only)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.MarkFlagsMutuallyExclusive("dev-cert", "cert")
	cmd.MarkFlagsMutuallyExclusive("dev-cert", "key")
	return cmd
}

// certPaths picks the certificate and key: the flags, systemd's
// credentials, or first boot's files.
func certPaths(o options) (string, string) {
	cert, key := o.cert, o.key
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if cert == "" {
		cert = tlsCertPath
		if dir != "" {
			cert = filepath.Join(dir, credCert)
		}
	}
	if key == "" {
		key = tlsKeyPath
		if dir != "" {
			key = filepath.Join(dir, credKey)
		}
	}
	return cert, key
}

// apiClient reaches omertad by its socket alone: --socket, else the site
// configuration's daemon.socket, else the default. The console is
// omertad's front, so it has no remote flags and reads no OMERTA_URL.
func apiClient(socket string, timeout time.Duration) (*apiclient.Client, error) {
	if socket == "" {
		cfg, err := config.Load(config.DefaultPath)
		if err != nil && !errors.Is(err, config.ErrNotFound) {
			return nil, fmt.Errorf("finding omertad's socket (or give --socket): %w", err)
		}
		socket = cfg.Daemon.Socket
	}
	return apiclient.New(socket, apiclient.WithTimeout(timeout)), nil
}

// newLogger logs to stderr as key=value text. Under systemd (JOURNAL_STREAM
// set) the timestamp is dropped, since journald stamps every line itself.
func newLogger(lv slog.Level) *slog.Logger {
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

// shutdownTimeout bounds a graceful stop (TimeoutStopSec=10 in the unit).
const shutdownTimeout = 5 * time.Second

// runConsole serves until ctx ends or the server fails.
func runConsole(ctx context.Context, stdout io.Writer, o options) error {
	if os.Geteuid() == 0 && !o.allowRoot {
		return ErrRoot
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	srv, closeClient, err := newServer(o, newLogger(lv))
	if err != nil {
		return err
	}
	defer closeClient()
	ln, activated, err := ui.Listen(o.listen)
	if err != nil {
		return err
	}
	printBanner(stdout, ln.Addr().String(), activated, srv.leaf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	<-errc
	return nil
}

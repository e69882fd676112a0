package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/firstboot"
	"github.com/omertaos/omertaos/ui"
)

// newConsoleCmd is listed in main.go's commands.

// consoleOptions are the flags of omerta console.
type consoleOptions struct {
	api       apiFlags
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

func newConsoleCmd() *cobra.Command {
	var o consoleOptions
	cmd := &cobra.Command{
		Use:   "console",
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
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConsole(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	o.api.socketOnly = true
	o.api.add(cmd, false)
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to listen on when systemd passes no socket")
	f.StringVar(&o.cert, "cert", "", "TLS certificate, PEM (default: $CREDENTIALS_DIRECTORY/"+credCert+", else "+firstboot.TLSCertPath+")")
	f.StringVar(&o.key, "key", "", "TLS key, PEM (default: $CREDENTIALS_DIRECTORY/"+credKey+", else "+firstboot.TLSKeyPath+")")
	f.StringVar(&o.devCert, "dev-cert", "", "make (or keep) a self-signed development certificate in this directory and use it")
	f.BoolVar(&o.allowRoot, "allow-root", false, "run even as root (development and tests only)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.MarkFlagsMutuallyExclusive("dev-cert", "cert")
	cmd.MarkFlagsMutuallyExclusive("dev-cert", "key")
	return cmd
}

// certPaths picks the certificate and key: the flags, systemd's
// credentials, or first boot's files.
func certPaths(o consoleOptions) (string, string) {
	cert, key := o.cert, o.key
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if cert == "" {
		cert = firstboot.TLSCertPath
		if dir != "" {
			cert = filepath.Join(dir, credCert)
		}
	}
	if key == "" {
		key = firstboot.TLSKeyPath
		if dir != "" {
			key = filepath.Join(dir, credKey)
		}
	}
	return cert, key
}

// consoleShutdown bounds a graceful stop.
const consoleShutdown = 5 * time.Second

func runConsole(ctx context.Context, stdout, stderr io.Writer, o consoleOptions) error {
	if os.Geteuid() == 0 && !o.allowRoot {
		return errors.New("console: refusing to run as root: the network-facing console runs as its own user " +
			"(omerta-console, see omerta-console.service); --allow-root is for development only")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := newLogger(o.logLevel)
	certFile, keyFile := certPaths(o)
	if o.devCert != "" {
		var err error
		if _, certFile, keyFile, err = ui.EnsureDevCert(o.devCert, time.Now()); err != nil {
			return err
		}
	}
	conf, leaf, err := ui.TLSConfig(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	client, err := o.api.client(ui.DefaultLimits.Longest())
	if err != nil {
		return err
	}
	defer client.Close()
	srv, err := ui.New(ui.Options{Backend: ui.ClientBackend{C: client}, TLS: conf, Logger: log})
	if err != nil {
		return err
	}
	ln, activated, err := ui.Listen(o.listen)
	if err != nil {
		return err
	}
	printConsoleBanner(stdout, ln.Addr().String(), activated, leaf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	select {
	case err := <-errc:
		return fmt.Errorf("console: serving: %w", err)
	case <-ctx.Done():
	}
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.Background(), consoleShutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	return nil
}

// printConsoleBanner says where the console answers and which certificate
// a browser will be shown, in first boot's fingerprint format.
func printConsoleBanner(w io.Writer, addr string, activated bool, leaf *x509.Certificate) {
	how := "listening on"
	if activated {
		how = "socket from systemd,"
	}
	fmt.Fprintf(w, "OMERTAOS console %s %s\n", how, addr)
	fmt.Fprintf(w, "  Console:          https://%s/\n", addr)
	fmt.Fprintf(w, "  TLS fingerprint:  %s\n", firstboot.CertFingerprint(leaf))
}

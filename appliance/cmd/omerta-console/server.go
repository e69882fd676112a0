package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/omertaos/omertaos/ui"
)

// server is the console's HTTPS server with the certificate it presents.
type server struct {
	*ui.Server
	leaf *x509.Certificate
}

// newServer loads the certificate (or makes the development one), connects
// the API client and builds the server; closeClient releases the client.
func newServer(o options, log *slog.Logger) (srv server, closeClient func(), err error) {
	certFile, keyFile := certPaths(o)
	if o.devCert != "" {
		if _, certFile, keyFile, err = ui.EnsureDevCert(o.devCert, time.Now()); err != nil {
			return server{}, nil, fmt.Errorf("development certificate: %w", err)
		}
	}
	conf, leaf, err := ui.TLSConfig(certFile, keyFile)
	if err != nil {
		return server{}, nil, err
	}
	client, err := apiClient(o.socket, ui.DefaultLimits.Longest())
	if err != nil {
		return server{}, nil, err
	}
	s, err := ui.New(ui.Options{Backend: ui.ClientBackend{C: client}, TLS: conf, Logger: log})
	if err != nil {
		client.Close()
		return server{}, nil, err
	}
	return server{Server: s, leaf: leaf}, func() { client.Close() }, nil
}

// printBanner says where the console answers and which certificate a
// browser will be shown, in first boot's fingerprint format.
func printBanner(w io.Writer, addr string, activated bool, leaf *x509.Certificate) {
	how := "listening on"
	if activated {
		how = "socket from systemd,"
	}
	fmt.Fprintf(w, "OMERTAOS console %s %s\n", how, addr)
	fmt.Fprintf(w, "  Console:          https://%s/\n", addr)
	fmt.Fprintf(w, "  TLS fingerprint:  %s\n", certFingerprint(leaf))
}

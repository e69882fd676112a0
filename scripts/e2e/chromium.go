package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/omertaos/omertaos/ui/browsertest"
)

// browserTimeout bounds each browser action on the booted image: setting a
// password hashes it with argon2id, which takes tens of seconds under
// emulation beside the Lynis audit.
const browserTimeout = 3 * time.Minute

// browserSetup runs the console's browser scenario in its appliance mode
// (ui/browsertest/scenario.mjs) against the booted image: Debian's chromium
// through playwright-core checks the certificate the banner pinned, refuses
// a wrong token, completes setup with the printed one, signs out and in,
// and opens the dashboard, which must show first boot finished, the
// report's verdict and verified signature, the hardware and GPU summary,
// the Lynis audit and the live stream. Screenshots go to <work>/browser.
func (r *run) browserSetup(ctx context.Context, sc string, v *vm, web *consoleBrowser, b banner, password string) bool {
	const name = "chromium: setup with the printed token, sign-in, the dashboard with the first-boot verdict and hardware"
	start := time.Now()
	err := r.runBrowser(ctx, v, web, b, password)
	return r.check(sc, name, err == nil, "%.0fs%s", time.Since(start).Seconds(), errSuffix(err))
}

func (r *run) runBrowser(ctx context.Context, v *vm, web *consoleBrowser, b banner, password string) error {
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("node (make e2e installs it): %w", err)
	}
	if _, err := os.Stat(browsertest.Chromium); err != nil {
		return fmt.Errorf("chromium (make e2e installs it): %w", err)
	}
	modules, err := browsertest.Install(r.opts.top)
	if err != nil {
		return err
	}
	leaf, err := web.certificate(ctx)
	if err != nil {
		return err
	}
	shots := filepath.Join(r.opts.work, "browser")
	if err := os.RemoveAll(shots); err != nil {
		return err
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "omerta-e2e-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	scn := browsertest.Scenario{
		Mode: browsertest.ModeAppliance, URL: consoleURL(v), Token: b.Token,
		Admin: e2eAdmin, AdminPassword: password,
		Shots: shots, UserData: profile,
		Subject: leaf.Subject.CommonName, ValidTo: leaf.NotAfter.Unix(),
		TimeoutMS: int(browserTimeout.Milliseconds()),
	}
	bctx, cancel := context.WithTimeout(ctx, 4*browserTimeout)
	defer cancel()
	return browsertest.Run(bctx, node, modules, r.opts.top, scn, func(l string) { fmt.Println("e2e: chromium:", l) })
}

// certificate is the console's certificate, fetched over the connection
// pinned to the banner's fingerprint.
func (b *consoleBrowser) certificate(ctx context.Context) (*x509.Certificate, error) {
	tr, ok := b.c.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("the form client has no TLS transport")
	}
	d := tls.Dialer{Config: tr.TLSClientConfig.Clone()}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", b.base.Host)
	if err != nil {
		return nil, fmt.Errorf("fetching the console's certificate: %w", err)
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("the console sent no certificate")
	}
	return certs[0], nil
}

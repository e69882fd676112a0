package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
)

// What the console's pages use (ui/security.go); kept here as literals
// because the test drives the console from outside, as a browser would.
const (
	consoleCookie = "__Host-omerta_session"
	consoleCSRF   = "X-CSRF-Token"
)

// consoleBrowser is what a browser is to the console for the setup page:
// a cookie jar and TLS pinned to the fingerprint the banner printed.
type consoleBrowser struct {
	base *url.URL
	c    *http.Client
}

func newConsoleBrowser(base, fingerprint string) (*consoleBrowser, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	pin, err := apiclient.ParseFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The appliance's certificate is self-signed: the pin is the trust.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return fmt.Errorf("%w: the console's certificate", apiclient.ErrFingerprint)
			}
			return nil
		},
	}}
	return &consoleBrowser{base: u, c: &http.Client{Transport: tr, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// setup posts the setup form; it returns the status and the redirect.
func (b *consoleBrowser) setup(ctx context.Context, token, user, password string) (int, string, error) {
	return b.post(ctx, "/setup", url.Values{"token": {token}, "username": {user}, "password": {password}, "password2": {password}})
}

// login posts the sign-in form; it returns the status and the redirect.
func (b *consoleBrowser) login(ctx context.Context, user, password string) (int, string, error) {
	return b.post(ctx, "/login", url.Values{"username": {user}, "password": {password}})
}

// post sends a page's form as a browser does, from the console's origin.
func (b *consoleBrowser) post(ctx context.Context, path string, form url.Values) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base.JoinPath(path).String(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base.Scheme+"://"+b.base.Host)
	resp, err := b.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Location"), nil
}

// session is the session cookie the console set, if any.
func (b *consoleBrowser) session() string {
	for _, c := range b.c.Jar.Cookies(b.base) {
		if c.Name == consoleCookie {
			return c.Value
		}
	}
	return ""
}

// json calls the console's /api/v1 as its pages' scripts do: the session
// cookie, and the CSRF token on changes.
func (b *consoleBrowser) json(ctx context.Context, method, path, csrf string, body, into any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base.JoinPath(path).String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", b.base.Scheme+"://"+b.base.Host)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set(consoleCSRF, csrf)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %d %q", method, path, resp.StatusCode, oneLine(string(data)))
	}
	return json.Unmarshal(data, into)
}

package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// The environment variables of the remote flags.
const (
	envURL         = "OMERTA_URL"
	envToken       = "OMERTA_TOKEN"
	envFingerprint = "OMERTA_FINGERPRINT"
)

// maxTokenFile bounds a token file: a token is under a hundred bytes.
const maxTokenFile = 4 << 10

// remoteFlags reach omertad through the console over HTTPS with an API
// token, from a machine other than omertad's.
type remoteFlags struct {
	url, token, tokenFile, fingerprint string
}

const remoteHelp = `Remote use: --url https://host:port (or OMERTA_URL) calls omertad through
the console with an API token read from --token-file F (or OMERTA_TOKEN),
and --fingerprint (or OMERTA_FINGERPRINT) pins the console's certificate to
the fingerprint first boot and "omerta-console" print. A token is never
taken on the command line, where every user of the machine can read it.`

func (r *remoteFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&r.url, "url", "", "the console's address, https://host:port, to reach omertad from another machine (env "+envURL+")")
	fl.StringVar(&r.tokenFile, "token-file", "", "a file holding the API token for --url (else env "+envToken+")")
	fl.StringVar(&r.token, "token", "", "refused: give the token with --token-file or "+envToken)
	fl.StringVar(&r.fingerprint, "fingerprint", "", `the console certificate's SHA-256, "SHA256:AB:CD:…" as the console prints it (env `+envFingerprint+")")
	if cmd.Long == "" {
		cmd.Long = cmd.Short + "."
	}
	cmd.Long += "\n\n" + remoteHelp
}

// client is the remote client the flags and the environment ask for, or
// ok false when they ask for none (the socket is used). A remote client
// needs a token; the certificate is pinned when a fingerprint is given,
// and must verify against the system's CAs otherwise.
func (r *remoteFlags) client(timeout time.Duration, socketGiven bool) (c *apiclient.Client, ok bool, err error) {
	if r.token != "" {
		return nil, false, errors.New("--token: a token on the command line is visible to every user of this machine (ps, /proc) and stays in the shell's history; put it in a file only you can read and give --token-file, or set " + envToken)
	}
	url := pick(r.url, envURL)
	if url == "" {
		if r.tokenFile != "" || r.fingerprint != "" {
			return nil, false, errors.New("--token-file and --fingerprint are for --url (or " + envURL + "); on omertad's machine the socket needs neither")
		}
		return nil, false, nil
	}
	if socketGiven {
		return nil, false, errors.New("--socket and --url (or " + envURL + "): give one, the socket on omertad's machine or the console's URL elsewhere")
	}
	token, err := r.readToken()
	if err != nil {
		return nil, false, err
	}
	opts := []apiclient.Option{apiclient.WithTimeout(timeout), apiclient.WithBearer(token)}
	if fp := pick(r.fingerprint, envFingerprint); fp != "" {
		opts = append(opts, apiclient.WithFingerprint(fp))
	}
	c, err = apiclient.NewRemote(url, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("--url: %w", err)
	}
	return c, true, nil
}

func pick(flag, env string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(env)
}

// readToken is the token of --token-file, else of the environment. The
// token itself is never put in an error.
func (r *remoteFlags) readToken() (string, error) {
	if r.tokenFile == "" {
		tok := strings.TrimSpace(os.Getenv(envToken))
		if tok == "" {
			return "", errors.New("--url needs an API token: --token-file F (an admin issues one in the console, under API tokens) or " + envToken)
		}
		return tok, checkToken(tok, envToken)
	}
	fi, err := os.Stat(r.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("--token-file %q: readable by every user of this machine; chmod o-r it first", r.tokenFile)
	}
	b, err := safeio.ReadFile(r.tokenFile, maxTokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %q: empty", r.tokenFile)
	}
	return tok, checkToken(tok, "--token-file "+fmt.Sprintf("%q", r.tokenFile))
}

// checkToken refuses what cannot be a token: anything but visible ASCII,
// which would also be refused (or worse, split) as a header value.
func checkToken(tok, where string) error {
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return fmt.Errorf("%s: not a token (byte %d is not visible ASCII; one token on one line is expected)", where, i)
		}
	}
	return nil
}

// explainRemote adds what a person can do about a refused certificate.
func explainRemote(err error) (error, bool) {
	var fe *apiclient.FingerprintError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &fe):
		return fmt.Errorf("%w (not the console you meant, or its certificate changed: compare with the fingerprint the console prints)", err), true
	case errors.As(err, &ua):
		return fmt.Errorf("%w (the appliance's certificate is its own: give --fingerprint as the console prints it)", err), true
	}
	return err, false
}

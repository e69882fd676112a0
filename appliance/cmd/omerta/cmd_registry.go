package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// exitRegistryFailed: a check failed, or the registry or a key could not
// be read.
const exitRegistryFailed exitCode = 1

const registryExitHelp = `
Exit status:
  0  every check passed
  1  a check failed (each failure is named), or something could not be read`

// registryKeyMaxBytes bounds a secret key or password file.
const registryKeyMaxBytes = 64 << 10

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Verify, lock and sign registries of models, agents and images (minisign)",
		Long: `A registry is a directory with REGISTRY.yaml (what it offers), registry.lock.json
(the SHA-256 of every file) and registry.lock.json.minisig (minisign's signature
of the lock): OMERTAOS's ai_registry format, with agents, images and files
added. These commands work offline, on any machine; trusted keys are minisign
public key files (*.pub) in a trust directory.`,
	}
	cmd.AddCommand(newRegistryVerifyCmd(), newRegistryLockCmd(), newRegistrySignCmd())
	return cmd
}

func newRegistryVerifyCmd() *cobra.Command {
	var trustDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check every file, catalog entry, manifest and the lock's signature; exit 0 only if all pass",
		Long: `verify checks the registry in DIR: every file against the lock's SHA-256,
every REGISTRY.yaml entry against the lock (an entry the lock lacks is a
failure), the lock's minisign signature against the keys in --trust, and each
manifest's fields and integrity (sha256 and signature of its artifact).

It prints one line per check, the right ones too, then the verdict. A digest
of all zeros and a signature such as "minisign:ABC123" are placeholders and
fail; a signature by a key the trust directory lacks fails and names the key
ID. Every string from the registry is printed escaped.
` + registryExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trust, err := registry.LoadTrust(trustDir)
			if err != nil {
				return err
			}
			r, err := registry.Verify(cmd.Context(), args[0], trust)
			if err != nil {
				return err
			}
			if asJSON {
				err = printJSON(cmd.OutOrStdout(), r)
			} else {
				err = registry.WriteText(cmd.OutOrStdout(), r)
			}
			if err != nil {
				return err
			}
			if !r.OK() {
				return exitRegistryFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustDir, "trust", registry.DefaultTrustDir, "directory of trusted minisign public keys (*.pub)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON (the exit status is the same)")
	return cmd
}

func newRegistryLockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lock DIR",
		Short: "Write registry.lock.json from REGISTRY.yaml (atomically)",
		Long: `lock hashes every file REGISTRY.yaml lists and writes DIR/registry.lock.json
(kind, name, path, sha256, size; for an image, the OCI digest its archive's
index.json names, else the old lock's). It refuses, naming each problem, when a file is missing or a manifest
is invalid or carries a placeholder: a lock must not vouch for a broken
registry. Sign the new lock with omerta registry sign.
` + registryExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lock, fs, err := registry.BuildLock(cmd.Context(), args[0], time.Now())
			if err != nil {
				return err
			}
			if lock == nil {
				return printRegistryRefusal(cmd.ErrOrStderr(), "not locked", fs)
			}
			data, err := registry.MarshalLock(lock)
			if err != nil {
				return err
			}
			p := filepath.Join(args[0], registry.LockFile)
			if _, err := atomicfile.WriteFile(p, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d entries; sign it with omerta registry sign\n", terminal.Escape(p), len(lock.Entries))
			return nil
		},
	}
}

func newRegistrySignCmd() *cobra.Command {
	var keyFile, passwordFile, comment, trustDir string
	cmd := &cobra.Command{
		Use:   "sign --key SECKEYFILE DIR",
		Short: "Sign DIR's registry.lock.json with a minisign secret key",
		Long: `sign writes DIR/registry.lock.json.minisig (atomically), a minisign signature of
the lock that minisign -Vm registry.lock.json -p KEY.pub accepts. SECKEYFILE is
a minisign secret key (minisign -G writes one; with -W it has no password,
otherwise give the password in --password-file).

It first checks the registry as verify does and refuses, naming each
problem, when a file does not match the lock or a manifest is invalid or
carries a placeholder. Artifact signatures by keys neither the signing key
nor --trust holds are not held against it: trust is decided where the
registry is verified.
` + registryExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return registrySign(cmd, args[0], keyFile, passwordFile, comment, trustDir)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "minisign secret key file (required)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file whose first line is the secret key's password")
	cmd.Flags().StringVar(&comment, "trusted-comment", "", `one line signed with the lock (default "timestamp:<now>\tfile:registry.lock.json\thashed", as minisign writes)`)
	cmd.Flags().StringVar(&trustDir, "trust", registry.DefaultTrustDir, "directory of trusted minisign public keys, for artifact signatures")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func registrySign(cmd *cobra.Command, dir, keyFile, passwordFile, comment, trustDir string) error {
	priv, err := readRegistryKey(keyFile, passwordFile)
	if err != nil {
		return err
	}
	pub, _ := priv.Public().(minisign.PublicKey)
	trust, err := registry.LoadTrust(trustDir)
	if err != nil {
		return err
	}
	r, err := registry.Verify(cmd.Context(), dir, registry.NewKeyring(append(trust.Keys(), pub)...))
	if err != nil {
		return err
	}
	if bad := signBlockers(r); len(bad) > 0 {
		return printRegistryRefusal(cmd.ErrOrStderr(), "not signed", bad)
	}
	lockPath := filepath.Join(dir, registry.LockFile)
	lock, err := safeio.ReadFile(lockPath, registry.DefaultLimits().LockBytes)
	if err != nil {
		return fmt.Errorf("reading the lock: %w", err)
	}
	sig := registry.Sign(lock, priv)
	if comment != "" {
		if sig, err = registry.SignWithComment(lock, priv, comment); err != nil {
			return fmt.Errorf("--trusted-comment: %w", err)
		}
	}
	if c := registry.VerifySignature(lock, sig, registry.NewKeyring(pub)); c.Code != registry.CodeOK {
		return fmt.Errorf("the new signature does not verify: %s", c.Detail)
	}
	sigPath := lockPath + ".minisig"
	if _, err := atomicfile.WriteFile(sigPath, sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "signed %s with key ID %s: wrote %s\n", terminal.Escape(lockPath), registry.KeyID(pub.ID()), terminal.Escape(sigPath))
	return nil
}

// signBlockers are the failures that forbid signing: anything but the
// lock's own (old or missing) signature and keys this machine lacks.
func signBlockers(r *registry.Result) []registry.Finding {
	var out []registry.Finding
	for _, f := range r.Failures() {
		if f.Subject == registry.SignatureFile || f.Code == registry.CodeMissingPublicKey {
			continue
		}
		out = append(out, f)
	}
	return out
}

func readRegistryKey(keyFile, passwordFile string) (minisign.PrivateKey, error) {
	data, err := safeio.ReadFile(keyFile, registryKeyMaxBytes)
	if err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("--key: %w", err)
	}
	password := ""
	if passwordFile != "" {
		pw, err := safeio.ReadFile(passwordFile, registryKeyMaxBytes)
		if err != nil {
			return minisign.PrivateKey{}, fmt.Errorf("--password-file: %w", err)
		}
		password, _, _ = strings.Cut(string(pw), "\n")
		password = strings.TrimSuffix(password, "\r")
	}
	k, err := registry.ParsePrivateKey(data, password)
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) && password == "" && minisign.IsEncrypted(data) {
			return k, fmt.Errorf("--key %s: %w (use --password-file)", terminal.Escape(keyFile), err)
		}
		return k, fmt.Errorf("--key %s: %w", terminal.Escape(keyFile), err)
	}
	return k, nil
}

// printRegistryRefusal names every problem on w, then exits 1.
func printRegistryRefusal(w io.Writer, what string, fs []registry.Finding) error {
	n := 0
	for _, f := range fs {
		if f.Failed() {
			fmt.Fprintln(w, terminal.Escape(f.String()))
			n++
		}
	}
	fmt.Fprintf(w, "omerta: %s: %d problem(s)\n", what, n)
	return exitRegistryFailed
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
	"github.com/omertaos/omertaos/firstboot/report"
)

// The exit statuses of `omerta report verify`, `show` and `html`. Only a
// report verified against a key the auditor supplied exits 0, so that
// `omerta report verify r.json && accept` cannot pass a report re-signed
// by whoever edited it.
const (
	// exitReportFailed: a check failed (edited, truncated or malformed),
	// or the report or key could not be read.
	exitReportFailed exitCode = 1
	// exitReportUntrusted: every check passed, but only against the key
	// inside the report, because no --pubkey or --fingerprint was given.
	exitReportUntrusted exitCode = 3
)

// reportExitHelp is the exit-status section of the verifying commands' help.
const reportExitHelp = `
Exit status:
  0  verified: every check passed against the key given with --pubkey or
     --fingerprint
  1  does not verify (a check failed), or the report or key could not be read
  3  self-consistent only: every check passed, but against the key inside
     the report, since no trusted key was given; anyone who edited the
     report could have re-signed it`

// pubkeyMaxBytes bounds a --pubkey file: a PEM or minisign key is a few
// hundred bytes.
const pubkeyMaxBytes = 64 << 10

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Verify, render and summarise the signed first-boot report",
		Long: `The first boot writes a signed report (report.json) of every hardening
control it applied and read back. These commands work offline, on any
machine: verify its hash chain and signature, render it as printable HTML,
print a short summary, or print its published JSON Schema.`,
	}
	cmd.AddCommand(newReportVerifyCmd(), newReportHTMLCmd(), newReportShowCmd(), newReportSchemaCmd())
	return cmd
}

// reportTrust holds the flags that name the key an auditor trusts and how
// much of a report they are willing to read.
type reportTrust struct {
	pubkey      string
	fingerprint string
	maxSize     sizeFlag
}

func (rt *reportTrust) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&rt.pubkey, "pubkey", "", "the device's public key, obtained out of band: a file (raw base64 as in signing.pub, PEM \"PUBLIC KEY\" or minisign .pub) or the base64 key itself")
	cmd.Flags().StringVar(&rt.fingerprint, "fingerprint", "", `the device key's fingerprint as the console printed it ("Report key: SHA256:<hex>")`)
	rt.maxSize = report.DefaultMaxBytes
	cmd.Flags().Var(&rt.maxSize, "max-size", "refuse a report larger than this (bytes, or with a KiB, MiB or GiB suffix)")
}

// sizeFlag is a byte count written as 16777216, 16MiB or 16M.
type sizeFlag int64

func (s *sizeFlag) String() string {
	switch n := int64(*s); {
	case n > 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n > 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	default:
		return strconv.FormatInt(n, 10)
	}
}

func (s *sizeFlag) Type() string { return "size" }

func (s *sizeFlag) Set(v string) error {
	num, shift := v, 0
	for _, u := range []struct {
		suffix string
		shift  int
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"K", 10}, {"M", 20}, {"G", 30}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1 || n > (1<<40)>>shift {
		return fmt.Errorf("%q is not a size between 1 byte and 1TiB", v)
	}
	*s = sizeFlag(n << shift)
	return nil
}

func (rt *reportTrust) options() (report.VerifyOptions, error) {
	var opts report.VerifyOptions
	opts.Fingerprint = rt.fingerprint
	if rt.pubkey == "" {
		return opts, nil
	}
	data, err := safeio.ReadFile(rt.pubkey, pubkeyMaxBytes)
	if errors.Is(err, os.ErrNotExist) {
		// Not a file: perhaps the key itself, pasted from the console.
		if pub, perr := report.ParsePublicKey([]byte(rt.pubkey)); perr == nil {
			opts.PublicKey = pub
			return opts, nil
		}
	}
	if err != nil {
		return opts, fmt.Errorf("--pubkey: %w", err)
	}
	pub, err := report.ParsePublicKey(data)
	if err != nil {
		return opts, fmt.Errorf("--pubkey %s: %w", rt.pubkey, err)
	}
	opts.PublicKey = pub
	return opts, nil
}

// reportVerify reads FILE and verifies it; a failed verification is not an
// error here, the caller decides what to print.
func reportVerify(path string, rt *reportTrust) (*report.Verification, error) {
	opts, err := rt.options()
	if err != nil {
		return nil, err
	}
	opts.MaxBytes = int64(rt.maxSize)
	data, err := safeio.ReadFile(path, opts.MaxBytes)
	if errors.Is(err, safeio.ErrTooLarge) {
		return nil, fmt.Errorf("reading report: %w (a report is tens of kilobytes; --max-size raises the limit)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading report: %w", err)
	}
	v, _ := report.VerifyWith(data, opts)
	return v, nil
}

// reportExit is the status a verifying command exits with once it has said
// what it found.
func reportExit(v *report.Verification) error {
	switch {
	case !v.OK():
		return exitReportFailed
	case !v.Trusted:
		return exitReportUntrusted
	}
	return nil
}

func newReportVerifyCmd() *cobra.Command {
	var rt reportTrust
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a report's hashes, chain and signature; exit 0 only if verified against a trusted key",
		Long: `verify checks, offline, that FILE is a well-formed v1 report, that every
record's hash and link in the chain, the header hash and the Ed25519 signature
are intact, and that the summary counts match the records. It prints each
check, then the verdict.

Without --pubkey or --fingerprint the signature is checked against the key
inside the report, which only proves that the report is self-consistent:
whoever edited it could have re-signed it. Pass the key or fingerprint shown
on the appliance's console to prove where the report came from.

Every string from the report is printed escaped (\r, \x1b, \u202e...), so
that none can rewrite the terminal. A report larger than --max-size
(default 16MiB), nested deeper than 64 levels, or that is not a regular file
is refused at once.
` + reportExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				data, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				if _, err := out.Write(append(terminal.EscapeJSON(data), '\n')); err != nil {
					return err
				}
			} else if err := report.WriteVerification(out, args[0], v, verbose); err != nil {
				return err
			}
			return reportExit(v)
		},
	}
	rt.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON (the exit status is the same)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the check of every record, not only failures")
	return cmd
}

func newReportHTMLCmd() *cobra.Command {
	var rt reportTrust
	var out string
	cmd := &cobra.Command{
		Use:   "html FILE",
		Short: "Render a report as a self-contained, printable HTML page",
		Long: `html verifies FILE (see "omerta report verify"), then renders it as one HTML
page with no external assets: the summary first, then every control with its
evidence. A report that does not verify, or that is only self-consistent
because no trusted key was given, is still rendered, under a banner saying
so, and the command exits with the same status as verify.
` + reportExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			if v.Report == nil {
				f := v.Failed()[0]
				return fmt.Errorf("cannot render %s: %s: %s", terminal.Escape(args[0]), terminal.Escape(f.Name), terminal.Escape(f.Detail))
			}
			var buf bytes.Buffer
			if err := report.RenderHTMLVerified(&buf, v.Report, v); err != nil {
				return err
			}
			if out == "" || out == "-" {
				if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
					return err
				}
			} else if err := writeReportFile(out, buf.Bytes()); err != nil {
				return err
			}
			warnUnverified(cmd, args[0], v, "rendered with a warning")
			return reportExit(v)
		},
	}
	rt.flags(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the page to this file (atomically) instead of standard output")
	return cmd
}

func newReportShowCmd() *cobra.Command {
	var rt reportTrust
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a short summary of a report and whether it verifies",
		Long: `show verifies FILE (see "omerta report verify") and prints a short summary:
host, image, profile, probe, Lynis, the failed and waived controls, and the
signature status. A report that does not verify, or that is only
self-consistent, is still summarised, and the command exits with the same
status as verify.
` + reportExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			if v.Report == nil {
				f := v.Failed()[0]
				return fmt.Errorf("cannot read %s: %s: %s", terminal.Escape(args[0]), terminal.Escape(f.Name), terminal.Escape(f.Detail))
			}
			if err := report.WriteSummary(cmd.OutOrStdout(), v.Report, v); err != nil {
				return err
			}
			return reportExit(v)
		},
	}
	rt.flags(cmd)
	return cmd
}

// warnUnverified says on standard error why a command that rendered the
// report anyway will not exit 0.
func warnUnverified(cmd *cobra.Command, path string, v *report.Verification, what string) {
	switch {
	case !v.OK():
		fmt.Fprintf(cmd.ErrOrStderr(), "omerta: %s does not verify; %s\n", terminal.Escape(path), what)
	case !v.Trusted:
		fmt.Fprintf(cmd.ErrOrStderr(), "omerta: %s is only self-consistent (no --pubkey or --fingerprint); %s\n", terminal.Escape(path), what)
	}
}

func newReportSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the published JSON Schema of the report (" + report.SchemaVersion + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(report.Schema)
			return err
		},
	}
}

// writeReportFile writes the rendered report atomically, so that a reader
// never sees half a report.
func writeReportFile(path string, data []byte) error {
	_, err := atomicfile.WriteFile(path, data, 0o644)
	return err
}

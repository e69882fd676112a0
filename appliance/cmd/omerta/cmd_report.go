package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/firstboot/report"
)

func init() { subcommands = append(subcommands, newReportCmd) }

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

// reportTrust holds the flags that name the key an auditor trusts.
type reportTrust struct {
	pubkey      string
	fingerprint string
}

func (rt *reportTrust) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&rt.pubkey, "pubkey", "", "the device's public key, obtained out of band: a file (raw base64 as in signing.pub, PEM \"PUBLIC KEY\" or minisign .pub) or the base64 key itself")
	cmd.Flags().StringVar(&rt.fingerprint, "fingerprint", "", `the device key's fingerprint as the console printed it ("Report key: SHA256:<hex>")`)
}

func (rt *reportTrust) options() (report.VerifyOptions, error) {
	var opts report.VerifyOptions
	opts.Fingerprint = rt.fingerprint
	if rt.pubkey == "" {
		return opts, nil
	}
	data, err := os.ReadFile(rt.pubkey)
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading report: %w", err)
	}
	v, _ := report.VerifyWith(data, opts)
	return v, nil
}

func newReportVerifyCmd() *cobra.Command {
	var rt reportTrust
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a report's hashes, chain and signature; exit 1 if anything was changed",
		Long: `verify checks, offline, that FILE is a well-formed v1 report, that every
record's hash and link in the chain, the header hash and the Ed25519 signature
are intact, and that the summary counts match the records. It prints each
check and exits 0 when all pass, 1 when any fails.

Without --pubkey or --fingerprint the signature is checked against the key
inside the report, which only proves that the report is self-consistent:
whoever edited it could have re-signed it. Pass the key or fingerprint shown
on the appliance's console to prove where the report came from.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return err
				}
			} else if err := report.WriteVerification(out, args[0], v, verbose); err != nil {
				return err
			}
			if !v.OK() {
				return exitCode(1)
			}
			return nil
		},
	}
	rt.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
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
evidence. A report that does not verify is still rendered, under a warning
naming what failed, and the command exits 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			if v.Report == nil {
				f := v.Failed()[0]
				return fmt.Errorf("cannot render %s: %s: %s", args[0], f.Name, f.Detail)
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
			if !v.OK() {
				fmt.Fprintf(cmd.ErrOrStderr(), "omerta: %s does not verify; rendered with a warning\n", args[0])
				return exitCode(1)
			}
			return nil
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
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := reportVerify(args[0], &rt)
			if err != nil {
				return err
			}
			if v.Report == nil {
				f := v.Failed()[0]
				return fmt.Errorf("cannot read %s: %s: %s", args[0], f.Name, f.Detail)
			}
			if err := report.WriteSummary(cmd.OutOrStdout(), v.Report, v); err != nil {
				return err
			}
			if !v.OK() {
				return exitCode(1)
			}
			return nil
		},
	}
	rt.flags(cmd)
	return cmd
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

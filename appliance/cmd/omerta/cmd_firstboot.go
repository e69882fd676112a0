package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/firstboot"
)

func newFirstbootCmd() *cobra.Command {
	var (
		root, probeRoot, profile string
		live                     bool
	)
	cmd := &cobra.Command{
		Use:   "firstboot",
		Short: "Run (or resume) the appliance's first boot: identity, keys, probe, hardening, setup token, signed report",
		Long: `firstboot prepares a freshly flashed appliance without a keyboard: it reads
the site configuration (/etc/omerta/omerta.yaml, then omerta.yaml on the
ESP), sets the hostname, network, SSH keys and time servers, creates the
device's signing key and TLS certificate, probes the hardware, applies and
verifies the hardening profile, issues a one-time setup token and writes a
signed report to /var/lib/omerta/firstboot.

The Lynis audit does not hold the console up: the report says it is
deferred (or skipped, and why), and ` + "`omerta firstboot audit`" + ` runs it
afterwards and seals its result into the report.

Every step is journalled and fsynced, so after a power cut the next run
resumes where the last one stopped. Once first boot is complete a further
run changes nothing. Without --live only files under --root are written;
omerta-firstboot.service runs it with --live on the appliance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := firstboot.Options{
				Root:      root,
				ProbeRoot: probeRoot,
				Live:      live,
				Out:       cmd.OutOrStdout(),
				Prober:    firstboot.ApplianceProber{},
				Hardener:  firstboot.ApplianceHardener{},
			}
			if profile != "" {
				p, err := config.ParseProfile(profile)
				if err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
				opts.Profile = p
			}
			_, err := firstboot.Run(cmd.Context(), opts)
			var se *firstboot.StepError
			if errors.As(err, &se) {
				// The failed step's line is already on the console.
				return exitCode(1)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "root directory of the system to prepare")
	f.StringVar(&profile, "profile", "", "hardening profile (user, pro, enterprise); overrides the site configuration")
	f.StringVar(&probeRoot, "probe-root", "/", "where the probe reads /proc and /sys")
	f.BoolVar(&live, "live", false, "also change the running kernel and services (needs --root /)")
	cmd.AddCommand(newReissueTokenCmd(), newFirstbootAuditCmd())
	return cmd
}

func newFirstbootAuditCmd() *cobra.Command {
	var (
		root        string
		live, retry bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Run the Lynis audit that first boot deferred and seal its result into the signed report",
		Long: `audit runs Lynis on the running system once first boot is complete and
seals its result (hardening index, warnings, suggestions, Lynis' version,
when and how long) into /var/lib/omerta/firstboot/report.json as an
addendum signed by the device key; ` + "`omerta report verify`" + ` checks it.
omerta-lynis.service runs it with --live after the console is up, at idle
priority, on every boot until the audit is sealed: an attempt cut off by a
power loss or a reboot counts, and after ` + strconv.Itoa(firstboot.MaxAuditAttempts) + ` failed attempts the report says
the audit failed and why. It prints "omerta-lynis: audit started (attempt
N of M)" and "omerta-lynis: audit sealed: hardening index I, ...".

--retry runs again an audit sealed as failed, once what made Lynis fail is
fixed; its outcome is sealed after the failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := firstboot.RunAudit(cmd.Context(), firstboot.AuditOptions{
				Options: firstboot.Options{Root: root, Live: live, Out: cmd.OutOrStdout()},
				Retry:   retry,
			})
			var se *firstboot.StepError
			if errors.As(err, &se) {
				// The failed attempt's line is already on the console.
				return exitCode(1)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "root directory of the appliance")
	f.BoolVar(&live, "live", false, "run Lynis on the running system (needs --root /)")
	f.BoolVar(&retry, "retry", false, "run again an audit that was sealed as failed")
	return cmd
}

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

func newReissueTokenCmd() *cobra.Command {
	var (
		root string
		ttl  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "reissue-token",
		Short: "Issue a new one-time setup token, replacing the old one (root only, audited)",
		Long: `reissue-token replaces the setup token with a new one, whether the old one
was used, expired or lost, and shows the new one in the login banner
(/etc/issue.d/50-omerta.issue) and here. First boot issues a token once and
never another, even when run again; this command is the only way to get a
second one. It writes an audit record (who, when, the hashes of the old and
the new token, never a token) to the state database's audit log before the
token exists, or to /var/lib/omerta/firstboot/token-audit.jsonl when the
machine has no database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if geteuid() != 0 {
				return errors.New("reissue-token: must run as root (the token opens the console to whoever holds it)")
			}
			res, err := firstboot.ReissueToken(cmd.Context(), firstboot.ReissueOptions{
				Root:  root,
				Actor: actor(),
				TTL:   ttl,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Setup token:      %s   (single use, valid until %s)\n", res.Token, res.ExpiresAt.UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "Audit record in:  %s\n", res.AuditedIn)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "root directory of the appliance")
	f.DurationVar(&ttl, "ttl", 0, "lifetime of the new token (default: firstboot.token_ttl of the installed configuration)")
	return cmd
}

// actor names who ran the command, for the audit record: the user ids and,
// when sudo ran it, the user sudo says asked (recorded, not trusted).
func actor() string {
	a := fmt.Sprintf("uid:%d omerta firstboot reissue-token", os.Getuid())
	if u := os.Getenv("SUDO_USER"); u != "" {
		a += fmt.Sprintf(" (sudo from %q)", u)
	}
	return a
}

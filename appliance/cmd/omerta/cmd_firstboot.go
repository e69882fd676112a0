package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/firstboot"
)

func init() { subcommands = append(subcommands, newFirstbootCmd) }

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
verifies the hardening profile, runs Lynis when installed, issues a one-time
setup token and writes a signed report to /var/lib/omerta/firstboot.

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
	return cmd
}

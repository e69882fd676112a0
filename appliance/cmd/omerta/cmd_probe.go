package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// newProbeMonitor is the drift monitor inside omertad (see wireDaemon): a
// probe at start and every probe.interval, stored with its drift, served at
// /api/v1/probe.
func newProbeMonitor(d daemon.Deps) *probe.Monitor {
	return probe.NewMonitor(d.Store,
		// The containerd omertad runs agents on, not necessarily the system's.
		probe.WithProbeOptions(probe.Options{StateDir: d.Config.Daemon.StateDir, Containerd: d.Config.Agents.Containerd, Now: d.Now}),
		probe.WithInterval(d.Config.Probe.Interval),
		probe.WithProfile(d.Config.Profile),
		probe.WithLogger(d.Logger.With("service", "probe")),
	)
}

// probeOutput is what --json prints: the facts and the verdict side by side,
// under one schema version so that scripts can tell shapes apart.
type probeOutput struct {
	SchemaVersion string        `json:"schema_version"`
	Verdict       probe.Verdict `json:"verdict"`
	Result        *probe.Result `json:"result"`
}

func newProbeCmd() *cobra.Command {
	var (
		asJSON     bool
		profile    string
		root       string
		matrixPath string
		containerd string
		configPath string
	)
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Probe the hardware and GPUs and judge them against a profile",
		Long: `probe reads the CPU, memory, disks, kernel, firmware security, network,
NVIDIA GPUs (through NVML) and containerd, and judges what it found against
the compatibility matrix for a profile. It prints the verdict first, then
every check that did not pass with its reason, then the rest.

The profile is --profile, else the profile of the site configuration
(--config), else "user". A machine without an NVIDIA driver or without a
running containerd is probed normally; the matrix decides what that means.

Exit status:
  0  pass: the machine meets everything the profile requires and recommends
  1  warn: it meets what the profile requires, not all it recommends
  2  fail: it lacks something the profile requires (or the probe itself failed)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := probeProfile(cmd, profile, configPath)
			if err != nil {
				return err
			}
			m := probe.DefaultMatrix()
			if matrixPath != "" {
				if m, err = probe.LoadMatrix(matrixPath); err != nil {
					return err
				}
			}
			res, err := probe.Run(cmd.Context(), probe.Options{Root: root, Containerd: containerd})
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "omerta:", terminal.Escape(err.Error()))
				return exitCode(2)
			}
			v := probe.Evaluate(res, m, p)
			out := cmd.OutOrStdout()
			// What the probe read (device names, firmware strings, files
			// under --root) is foreign: no byte of it reaches the terminal
			// as a control sequence.
			if asJSON {
				if err := writeJSON(out, probeOutput{SchemaVersion: probe.SchemaVersion, Verdict: v, Result: res}); err != nil {
					return err
				}
			} else if err := probe.WriteSummary(terminal.NewWriter(out), res, v); err != nil {
				return err
			}
			switch v.Status {
			case probe.StatusPass:
				return nil
			case probe.StatusWarn:
				return exitCode(1)
			}
			return exitCode(2)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the full result and verdict as JSON (schema "+probe.SchemaVersion+")")
	f.StringVar(&profile, "profile", "", "profile to judge against: user, pro or enterprise (default: the configured profile)")
	f.StringVar(&root, "root", "/", "read /proc, /sys, /dev and /etc/cdi under this directory (a captured machine)")
	f.StringVar(&matrixPath, "matrix", "", "compatibility matrix YAML to use instead of the built-in one")
	f.StringVar(&containerd, "containerd", "", `containerd socket ("-" to skip; default `+probe.DefaultContainerdAddress+")")
	f.StringVar(&configPath, "config", config.DefaultPath, "site configuration that names the profile when --profile is not given")
	return cmd
}

// probeProfile picks the profile: the flag wins; else the site
// configuration's, if the file is there and valid; else the default.
func probeProfile(cmd *cobra.Command, flag, configPath string) (config.Profile, error) {
	if flag != "" {
		p, err := config.ParseProfile(flag)
		if err != nil {
			return "", fmt.Errorf("--profile: %w", err)
		}
		return p, nil
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		if errors.Is(err, config.ErrNotFound) && !cmd.Flags().Changed("config") {
			// No site configuration on a development machine is normal.
			return config.Default().Profile, nil
		}
		return "", fmt.Errorf("choosing the profile: %w", err)
	}
	return cfg.Profile, nil
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/terminal"
	"github.com/omertaos/omertaos/hardening"
)

// hardenFlags are the flags of `omerta harden`.
type hardenFlags struct {
	root, profile string
	live, check   bool
	asJSON        bool
}

func newHardenCmd() *cobra.Command {
	var f hardenFlags
	cmd := &cobra.Command{
		Use:   "harden",
		Short: "Apply the hardening profile to a root directory, or check it for drift",
		Long: `harden applies the controls of a hardening profile (user, pro, enterprise)
to a root directory and reads every control back: kernel and network sysctls,
disabled modules, mount options, core dumps, file permissions, login.defs,
the nftables input policy, sshd, audit rules, journald and banners.

Without --live only files under --root change. With --live (root "/" only)
the running kernel is updated too: /proc/sys, nft, audit rules, remounts.

--check changes nothing: it re-verifies every control, prints the controls
that drifted (fail or error) and exits 1 if any did. On root "/" it also
reads the running kernel unless --live=false is given.

The profile comes from --profile, else from <root>/etc/omerta/omerta.yaml,
else the default (user).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options(cmd.Flags().Changed("live"))
			if err != nil {
				return err
			}
			if f.check {
				return runHardenCheck(cmd, opts, f.asJSON)
			}
			return runHardenApply(cmd, opts, f.asJSON)
		},
	}
	cmd.Flags().StringVar(&f.root, "root", "/", "root directory to harden (an image tree or a test directory)")
	cmd.Flags().StringVar(&f.profile, "profile", "", "hardening profile: user, pro or enterprise (default: from the site configuration)")
	cmd.Flags().BoolVar(&f.live, "live", false, "also change (or, with --check, read) the running kernel; only with --root /")
	cmd.Flags().BoolVar(&f.check, "check", false, "change nothing; print controls that drifted and exit 1 if any did")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the results as JSON")
	return cmd
}

// options turns the flags and the root's site configuration into
// hardening.Options. liveSet says whether --live was given explicitly.
func (f hardenFlags) options(liveSet bool) (hardening.Options, error) {
	site, err := loadSite(f.root)
	if err != nil {
		return hardening.Options{}, err
	}
	p := site.Profile
	if f.profile != "" {
		if p, err = config.ParseProfile(f.profile); err != nil {
			return hardening.Options{}, fmt.Errorf("--profile: %w", err)
		}
	}
	absRoot, err := filepath.Abs(f.root)
	if err != nil {
		return hardening.Options{}, fmt.Errorf("--root: %w", err)
	}
	live := f.live
	if f.check && !liveSet && absRoot == "/" {
		live = true
	}
	if live && absRoot != "/" {
		return hardening.Options{}, fmt.Errorf("--live: the running kernel can only be changed or read with --root /, not %s", terminal.Escape(f.root))
	}
	return hardening.Options{Root: absRoot, Profile: p, Site: site, Live: live}, nil
}

func runHardenCheck(cmd *cobra.Command, opts hardening.Options, asJSON bool) error {
	results, err := hardening.Check(cmd.Context(), opts)
	if err != nil {
		return fmt.Errorf("checking hardening: %w", err)
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(out, results)
	}
	var shown []hardening.Result
	for _, r := range results {
		if r.Result.Drift() {
			shown = append(shown, r)
		}
	}
	fmt.Fprintf(out, "profile %s, root %s, live %t: %d controls, %s\n", opts.Profile, terminal.Escape(opts.Root), opts.Live, len(results), summary(results))
	if len(shown) == 0 {
		fmt.Fprintln(out, "no drift")
		return nil
	}
	fmt.Fprintf(out, "drift in %d controls:\n", len(shown))
	printTable(out, shown)
	return exitCode(1)
}

func runHardenApply(cmd *cobra.Command, opts hardening.Options, asJSON bool) error {
	applied, err := hardening.Apply(cmd.Context(), opts)
	if err != nil {
		return fmt.Errorf("applying hardening: %w", err)
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(out, applied)
	}
	printTable(out, applied.Results)
	fmt.Fprintf(out, "\nprofile %s, root %s, live %t: %d controls, %s; %d files changed\n",
		opts.Profile, terminal.Escape(opts.Root), opts.Live, len(applied.Results), summary(applied.Results), len(applied.Changed))
	for _, c := range applied.Changed {
		fmt.Fprintf(out, "  changed %s\n", terminal.Escape(c))
	}
	for _, r := range applied.Results {
		if r.Result.Drift() {
			return exitCode(1)
		}
	}
	return nil
}

// loadSite reads <root>/etc/omerta/omerta.yaml strictly; a missing file
// means the defaults, a bad one is an error naming the field. The path is
// resolved inside the root: an image's /etc/omerta may be a link, and it
// must not lead to the configuration of the machine running the command.
func loadSite(root string) (config.Config, error) {
	r, err := rootfs.New(root)
	if err != nil {
		return config.Config{}, fmt.Errorf("--root: %w", err)
	}
	// Read through the root's handle, so that a link anywhere on the way,
	// the file itself included, resolves inside --root.
	data, err := r.ReadFile(config.DefaultPath, config.MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return config.Default(), nil
	}
	if err != nil {
		return config.Config{}, fmt.Errorf("site configuration: %w", err)
	}
	cfg, err := config.Parse(data, config.DefaultPath, config.Default())
	if err != nil {
		return cfg, fmt.Errorf("site configuration: %w", err)
	}
	return cfg, nil
}

func summary(results []hardening.Result) string {
	counts := map[hardening.Outcome]int{}
	for _, r := range results {
		counts[r.Result]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[hardening.Outcome(k)], k))
	}
	return strings.Join(parts, ", ")
}

// printTable prints one line per control. Actual values and waivers are
// read from the root (a file there may hold anything), so every cell is
// escaped for the terminal, tabs included, which would break the columns.
func printTable(w io.Writer, results []hardening.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL\tRESULT\tACTUAL")
	for _, r := range results {
		actual := r.Actual
		if r.Waiver != "" {
			actual += " [waived: " + r.Waiver + "]"
		}
		actual = terminal.Escape(actual)
		if len(actual) > 110 {
			actual = clipRunes(actual, 107) + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", terminal.Escape(r.ID), terminal.Escape(string(r.Result)), actual)
	}
	tw.Flush()
}

// clipRunes cuts s to at most n bytes without splitting a UTF-8 sequence,
// which would print as garbage (and, escaped, as \xNN noise).
func clipRunes(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeJSON prints v as indented JSON with the runes a terminal would obey
// escaped (\u009b, \u202e); it still decodes to the same values.
func writeJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(terminal.EscapeJSON(data), '\n'))
	return err
}

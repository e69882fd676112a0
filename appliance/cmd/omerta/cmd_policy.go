package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// The policy and tenant commands talk to omertad: reading needs any role,
// changing a policy or a tenant needs an administrator (or root on the
// socket). A document is checked here first, as omertad checks it, so
// that a refusal names its field before anything is sent.

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Read and change the policies that admit agents; decisions and coverage",
		Long: `A policy (apiVersion ` + policy.APIVersion + `, kind ` + policy.KindPolicy + `) applies to an agent, a catalog
category or a tenant, over the profile's defaults; see docs/agents-api.md.
Every change adds a version (history and rollback), is audited, and names
the deployed agents it makes non-compliant.`,
	}
	cmd.AddCommand(newPolicyListCmd(), newPolicyGetCmd(), newPolicySetCmd(), newPolicyHistoryCmd(), newPolicyRollbackCmd(),
		newPolicyDecisionsCmd(), newPolicyCoverageCmd())
	return cmd
}

func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Read and change the tenants and their quotas",
		Long: `Every agent belongs to a tenant (default: ` + policy.DefaultTenant + `). A tenant (kind ` + policy.KindTenant + `) has
quotas over all its agents together, which admission checks.`,
	}
	cmd.AddCommand(newTenantListCmd(), newTenantSetCmd())
	return cmd
}

// readDocument reads a policy or tenant document: bounded, a regular file
// only ("-" is standard input).
func readDocument(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), apitype.MaxPolicyDocument+1))
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		if len(b) > apitype.MaxPolicyDocument {
			return nil, fmt.Errorf("standard input: more than %d bytes", apitype.MaxPolicyDocument)
		}
		return b, nil
	}
	b, err := safeio.ReadFile(path, apitype.MaxPolicyDocument)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", terminal.Escape(path), err)
	}
	return b, nil
}

// refused lists a document's problems, each naming its field.
func refused(path string, err error) error {
	var ie *policy.InvalidError
	if !errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", terminal.Escape(path), err)
	}
	return fmt.Errorf("%s: refused:%s", terminal.Escape(path), problemLines(ie.Problems))
}

func problemLines(ps manifest.Problems) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("\n  ")
		if p.Path != "" {
			b.WriteString(terminal.Escape(p.Path) + ": ")
		}
		b.WriteString(terminal.Escape(p.Reason))
	}
	return b.String()
}

func newPolicyListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the policies in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showCall(cmd, &f, (*apiclient.Client).Policies, printPolicies)
		},
	}
	f.add(cmd, true)
	return cmd
}

func printPolicies(w io.Writer, l apitype.PolicyList) error {
	fmt.Fprintf(w, "profile %s; %d policies over its defaults\n", terminal.Escape(l.Profile), len(l.Policies))
	t := newTable(w, 48, "KIND", "NAME", "VERSION", "UPDATED BY", "DESCRIPTION")
	for _, p := range l.Policies {
		t.row(p.Subject.Kind, p.Subject.Name, itoa(p.Version), p.UpdatedBy, p.Description)
	}
	return t.flush()
}

func newPolicyGetCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "get KIND NAME",
		Short: "Print a policy's current document (kind: agent, category or tenant)",
		Long: `get prints the policy's current version as a document that policy set
takes back as it is; --json prints the whole answer.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			p, err := c.Policy(cmd.Context(), args[0], args[1])
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# version %d, by %s\n", p.Version, terminal.Escape(p.UpdatedBy))
			_, err = cmd.OutOrStdout().Write(jsonSafe([]byte(p.Document)))
			return err
		},
	}
	f.add(cmd, true)
	return cmd
}

func newPolicySetCmd() *cobra.Command {
	var (
		f         apiFlags
		ifVersion int64
	)
	cmd := &cobra.Command{
		Use:   "set FILE",
		Short: "Store FILE (YAML or JSON; - is standard input) as its subject's new policy version",
		Long: `set checks FILE as omertad does, then stores it as the new version of
the policy of the subject it names. With --if-version N the change is
refused unless the policy is at version N (someone else changed it).
The deployed agents the change makes non-compliant are listed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readDocument(cmd, args[0])
			if err != nil {
				return err
			}
			doc, err := policy.Parse(data)
			if err != nil {
				return refused(args[0], err)
			}
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			ch, err := c.PutPolicy(cmd.Context(), string(doc.Subject.Kind), doc.Subject.Name, string(data), ifVersion)
			if err != nil {
				return explain(err)
			}
			return printChange(cmd, f.json, ch)
		},
	}
	f.add(cmd, true)
	cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "refuse unless the policy is at this version")
	return cmd
}

func printChange(cmd *cobra.Command, asJSON bool, ch apitype.PolicyChange) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), ch)
	}
	w := cmd.OutOrStdout()
	sub := terminal.Escape(ch.Policy.Subject.Kind + "/" + ch.Policy.Subject.Name)
	if ch.Unchanged {
		fmt.Fprintf(w, "policy %s unchanged at version %d\n", sub, ch.Policy.Version)
	} else {
		fmt.Fprintf(w, "policy %s: %s, now version %d\n", sub, terminal.Escape(ch.Action), ch.Policy.Version)
	}
	printFindings(w, ch.NonCompliant)
	return nil
}

func printFindings(w io.Writer, fs []apitype.PolicyFinding) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(w, "%d deployed agents are now non-compliant:\n", len(fs))
	for _, f := range fs {
		fmt.Fprintf(w, "  %s (tenant %s): %s: %s\n", terminal.Escape(f.Agent), terminal.Escape(f.Tenant),
			terminal.Escape(f.Decision.Rule), terminal.Escape(f.Decision.Reason))
	}
}

func newPolicyHistoryCmd() *cobra.Command {
	var (
		f     apiFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "history KIND NAME",
		Short: "List a policy's versions, newest first",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.PolicyHistory(cmd.Context(), args[0], args[1], 0, limit)
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), h)
			}
			t := newTable(cmd.OutOrStdout(), 48, "VERSION", "ACTION", "FROM", "BY", "AT")
			for _, v := range h.Versions {
				from := ""
				if v.FromVersion > 0 {
					from = itoa(v.FromVersion)
				}
				t.row(itoa(v.Version), v.Action, from, v.Actor, v.At.UTC().Format("2006-01-02 15:04:05Z"))
			}
			return t.flush()
		},
	}
	f.add(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", apitype.PolicyHistoryLimitDefault, "at most this many versions")
	return cmd
}

func newPolicyRollbackCmd() *cobra.Command {
	var (
		f         apiFlags
		ifVersion int64
	)
	cmd := &cobra.Command{
		Use:   "rollback KIND NAME VERSION",
		Short: "Make a new version of a policy equal to an earlier VERSION",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil || to < 1 {
				return fmt.Errorf("VERSION: %s is not a version number (1 or more)", strconv.Quote(args[2]))
			}
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			ch, err := c.RollbackPolicy(cmd.Context(), args[0], args[1], to, ifVersion)
			if err != nil {
				return explain(err)
			}
			return printChange(cmd, f.json, ch)
		},
	}
	f.add(cmd, true)
	cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "refuse unless the policy is at this version")
	return cmd
}

func newPolicyDecisionsCmd() *cobra.Command {
	var (
		f    apiFlags
		filt apiclient.DecisionFilter
	)
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "List the latest admission decisions, newest first: the rule that decided and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Decisions(cmd.Context(), filt)
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), l)
			}
			t := newTable(cmd.OutOrStdout(), 0, "ID", "AT", "OP", "AGENT", "TENANT", "OUTCOME", "RULE", "REASON")
			for _, d := range l.Decisions {
				outcome := "denied"
				if d.Decision.Allow {
					outcome = "allowed"
				}
				t.row(itoa(d.ID), d.At.UTC().Format("2006-01-02 15:04:05Z"), d.Op, d.Agent, d.Tenant, outcome, d.Decision.Rule, d.Decision.Reason)
			}
			return t.flush()
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&filt.Denied, "denied", false, "only denials")
	cmd.Flags().StringVar(&filt.Agent, "agent", "", "only this agent's")
	cmd.Flags().StringVar(&filt.Tenant, "tenant", "", "only this tenant's")
	cmd.Flags().IntVar(&filt.Limit, "limit", apitype.DecisionLimitDefault, "at most this many (1 to "+strconv.Itoa(apitype.DecisionLimitMax)+")")
	return cmd
}

func newPolicyCoverageCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Print the policy coverage and manifests-validated KPIs and the non-compliant agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showCall(cmd, &f, (*apiclient.Client).Coverage, printCoverage)
		},
	}
	f.add(cmd, true)
	return cmd
}

func ratioText(r *float64) string {
	if r == nil {
		return "no agents deployed"
	}
	return fmt.Sprintf("%.1f %%", *r*100)
}

func printCoverage(w io.Writer, cov apitype.CoverageView) error {
	fmt.Fprintf(w, "policy coverage: %s (%d of %d deployed agents under an explicit policy they pass; target >= %.0f %%)\n",
		ratioText(cov.Ratio), cov.Covered, cov.Deployed, cov.Target*100)
	if m := cov.Manifests; m != nil {
		fmt.Fprintf(w, "manifests validated: %s (%d of %d)\n", ratioText(m.Ratio), m.Validated, m.Deployed)
		for _, id := range m.Invalid {
			fmt.Fprintf(w, "  %s: its stored manifest does not pass the checks\n", terminal.Escape(id))
		}
	}
	if len(cov.NonCompliant) > 0 {
		fmt.Fprintf(w, "%d non-compliant agents:\n", len(cov.NonCompliant))
		for _, a := range cov.NonCompliant {
			fmt.Fprintf(w, "  %s (tenant %s): %s: %s\n", terminal.Escape(a.Agent), terminal.Escape(a.Tenant), terminal.Escape(a.Rule), terminal.Escape(a.Reason))
		}
	}
	return nil
}

func newTenantListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenants with their quotas and usage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showCall(cmd, &f, (*apiclient.Client).Tenants, printTenants)
		},
	}
	f.add(cmd, true)
	return cmd
}

func printTenants(w io.Writer, l apitype.TenantList) error {
	t := newTable(w, 48, "TENANT", "AGENTS", "CPU", "MEMORY", "GPUS", "DESCRIPTION")
	for _, tv := range l.Tenants {
		q, u := tv.Quotas, tv.Usage
		t.row(tv.Name, used(itoa(u.Agents), intQuota(q.Agents)), used(u.CPU, q.CPU), used(u.Memory, q.Memory),
			used(itoa(u.GPUs), intQuota(q.GPUs)), tv.Description)
	}
	return t.flush()
}

// used is "3/10", or "3/-" without a quota.
func used(u, quota string) string {
	if quota == "" {
		quota = "-"
	}
	return u + "/" + quota
}

func intQuota(q *int64) string {
	if q == nil {
		return ""
	}
	return itoa(*q)
}

func newTenantSetCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "set FILE",
		Short: "Create or change the tenant FILE names (YAML or JSON; - is standard input)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readDocument(cmd, args[0])
			if err != nil {
				return err
			}
			doc, err := policy.ParseTenant(data)
			if err != nil {
				return refused(args[0], err)
			}
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			ch, err := c.PutTenant(cmd.Context(), doc.Name, string(data))
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), ch)
			}
			verb := "changed"
			switch {
			case ch.Created:
				verb = "created"
			case ch.Unchanged:
				verb = "unchanged"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant %s %s\n", terminal.Escape(ch.Tenant.Name), verb)
			printFindings(cmd.OutOrStdout(), ch.NonCompliant)
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

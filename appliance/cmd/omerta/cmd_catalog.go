package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// exitCatalogInvalid is lint's status when a file could not be read or
// holds a refusal.
const exitCatalogInvalid exitCode = 1

func newCatalogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Check agent manifests and OMERTAOS catalog files; print the manifest's JSON Schema",
		Long: `The agent catalog lists what an operator can deploy: the manifests the
image ships in ` + catalog.DefaultDir + ` and the files an operator imports.
A file is an agent manifest (apiVersion ` + manifest.APIVersion + `, kind ` + manifest.Kind + `; see
docs/agent-manifest.md), an OMERTAOS agents.yaml with its recipes, an
AgentRecipe, or an OMERTAOS AgentTemplate (apiVersion aion.os/v1).

lint and schema work offline, without the daemon; import, list and show
talk to omertad (import needs root).`,
	}
	cmd.AddCommand(newCatalogLintCmd(), newCatalogSchemaCmd(), newCatalogImportCmd(), newCatalogListCmd(), newCatalogShowCmd())
	return cmd
}

func newCatalogLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check catalog files and print each agent as a normalised manifest",
		Long: `lint reads each FILE and prints every agent in it as a normalised manifest
(YAML, defaults filled in, secret configuration values shown as "` + manifest.Redacted + `"),
after comments that say where it came from, whether it can be deployed and,
for an OMERTAOS file, every field that was dropped or approximated. Each
refusal is printed on standard error as FILE: FIELD: REASON.

Exit status:
  0  every file was read and every agent in it is valid
  1  a file could not be read, or something in it was refused`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := terminal.NewWriter(cmd.OutOrStdout())
			errs := terminal.NewWriter(cmd.ErrOrStderr())
			ok := true
			for _, path := range args {
				f, err := catalog.ReadFile(path)
				if err != nil {
					fmt.Fprintln(errs, terminal.Escape(err.Error()))
					ok = false
					continue
				}
				fileOK, err := catalog.Lint(f, out, errs)
				if err != nil {
					return fmt.Errorf("writing lint output: %w", err)
				}
				ok = ok && fileOK
			}
			if !ok {
				return exitCatalogInvalid
			}
			return nil
		},
	}
}

func newCatalogSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the agent manifest (" + manifest.APIVersion + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(manifest.Schema())
			return err
		},
	}
}

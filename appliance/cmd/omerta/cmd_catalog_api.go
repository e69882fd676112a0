package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// The catalog commands that talk to omertad: import, list, show.

func newCatalogImportCmd() *cobra.Command {
	var (
		f       apiFlags
		replace bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Add catalog files to the running catalog (needs root)",
		Long: `import sends each FILE (any format lint reads; an agents.yaml with the
recipes it names, read from beside it) to omertad, which checks it and adds
every agent in it, or none. An id already in the catalog is refused unless
--replace is given and the entry was imported; an entry the image ships is
never replaced. Each added entry is recorded in the audit log.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			var all []apitype.CatalogEntry
			for _, path := range args {
				req, err := catalogImportRequest(path)
				if err != nil {
					return err
				}
				req.Replace = replace
				out, err := c.ImportCatalog(cmd.Context(), req)
				if err != nil {
					return fmt.Errorf("%s: %w", terminal.Escape(path), explain(err))
				}
				all = append(all, out.Entries...)
				if !f.json {
					for _, e := range out.Entries {
						fmt.Fprintf(cmd.OutOrStdout(), "imported %s from %s (%s)%s\n", terminal.Escape(e.ID), terminal.Escape(path),
							terminal.Escape(e.Format), notesText(e))
					}
				}
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), apitype.CatalogImported{Entries: all})
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&replace, "replace", false, "replace imported entries with the same ids")
	return cmd
}

func notesText(e apitype.CatalogEntry) string {
	var parts []string
	if !e.Deployable {
		parts = append(parts, e.NotDeployable)
	}
	if len(e.Notes) > 0 {
		parts = append(parts, fmt.Sprintf("%d fields dropped or approximated; see omerta catalog show %s", len(e.Notes), e.ID))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + terminal.Escape(strings.Join(parts, "; "))
}

// catalogImportRequest reads path and the files it names (an agents.yaml's
// recipes), each read the way lint reads it: bounded, regular files only,
// never from outside path's directory.
func catalogImportRequest(path string) (apitype.CatalogImport, error) {
	data, err := safeio.ReadFile(path, catalog.MaxFileBytes)
	if err != nil {
		return apitype.CatalogImport{}, fmt.Errorf("reading catalog file %s: %w", terminal.Escape(path), err)
	}
	files := map[string]string{}
	read := catalog.DirReader(filepath.Dir(path))
	catalog.Parse(path, data, func(rel string) ([]byte, error) {
		b, err := read(rel)
		if err == nil && len(files) < catalog.MaxImportFiles {
			files[filepath.ToSlash(filepath.Clean(rel))] = string(b)
		}
		return b, err
	})
	return apitype.CatalogImport{Name: filepath.Base(path), Document: string(data), Files: files}, nil
}

func newCatalogListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the running catalog: shipped and imported entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Catalog(cmd.Context())
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), l)
			}
			t := newTable(cmd.OutOrStdout(), 40, "ID", "NAME", "CATEGORY", "ORIGIN", "DEPLOYABLE", "IMAGE")
			for _, e := range l.Entries {
				dep := "yes"
				if !e.Deployable {
					dep = strings.TrimPrefix(e.NotDeployable, "not deployable: ")
					dep = "no: " + dep
				}
				t.row(e.ID, e.Name, e.Category, e.Origin, dep, imageText(e.Image))
			}
			return t.flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func newCatalogShowCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one catalog entry, its notes and its manifest (secrets hidden)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.CatalogEntry(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), v)
			}
			return printCatalogEntry(cmd, v)
		},
	}
	f.add(cmd, true)
	return cmd
}

func printCatalogEntry(cmd *cobra.Command, v apitype.CatalogEntryView) error {
	w := cmd.OutOrStdout()
	t := newTable(w, 0, "FIELD", "VALUE")
	t.row("id", v.ID)
	t.row("name", v.Name)
	t.row("version", v.Version)
	t.row("category", v.Category)
	t.row("framework", v.Framework)
	t.row("description", strings.TrimSpace(v.Description))
	t.row("origin", v.Origin)
	t.row("from", strings.TrimSpace(v.File+" "+v.Source)+" ("+v.Format+")")
	if v.ImportedAt != nil {
		t.row("imported", v.ImportedBy+" at "+v.ImportedAt.UTC().Format(time.RFC3339))
	}
	dep := "yes"
	if !v.Deployable {
		dep = v.NotDeployable
	}
	t.row("deployable", dep)
	t.row("image", imageText(v.Image))
	t.row("isolation", v.Isolation)
	for _, n := range v.Notes {
		t.row("note", n.Action+" "+n.Path+": "+n.Reason)
	}
	for _, p := range v.Problems {
		t.row("problem", p.Path+": "+p.Reason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "manifest:")
	return printJSON(w, v.Manifest)
}

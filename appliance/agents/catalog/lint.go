package catalog

import (
	"bufio"
	"fmt"
	"io"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Lint writes what `omerta catalog lint` shows for f. Each valid entry goes
// to out as one YAML document, the normalised manifest, preceded by
// comments naming where it came from, whether it can be deployed and every
// field that was dropped or approximated. Each refusal goes to errs as
// "FILE: FIELD: REASON". It reports whether f had no refusals.
func Lint(f *File, out, errs io.Writer) (ok bool, err error) {
	ow, ew := bufio.NewWriter(out), bufio.NewWriter(errs)
	name := terminal.Escape(f.Path)
	for _, p := range f.Problems {
		fmt.Fprintf(ew, "%s: %s\n", name, p)
	}
	for _, n := range f.Notes {
		fmt.Fprintf(ow, "# %s: %s\n", name, n)
	}
	for i := range f.Entries {
		if err := lintEntry(ow, ew, name, &f.Entries[i]); err != nil {
			return false, err
		}
	}
	if err := ow.Flush(); err != nil {
		return false, err
	}
	return f.OK(), ew.Flush()
}

func lintEntry(out, errs io.Writer, name string, e *Entry) error {
	where := name
	if e.Source != "" {
		where += " " + e.Source
	}
	if !e.OK() {
		for _, p := range e.Problems {
			if p.Path == "" {
				p.Path = e.Source
			}
			fmt.Fprintf(errs, "%s: %s\n", name, p)
		}
		return nil
	}
	fmt.Fprintf(out, "---\n# %s (%s)\n", where, e.Format)
	if ok, why := e.Deployable(); !ok {
		fmt.Fprintf(out, "# %s\n", why)
	} else if e.Manifest.Spec.Image.Digest == "" {
		fmt.Fprintf(out, "# image digest: not given; resolved when the image is imported or first deployed, then pinned\n")
	}
	for _, n := range e.Notes {
		fmt.Fprintf(out, "# %s\n", n)
	}
	data, err := manifest.Marshal(e.Manifest)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}

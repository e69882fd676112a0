package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// imageImportTimeout bounds an import: an archive of gigabytes is read,
// checked and unpacked by omertad.
const imageImportTimeout = 30 * time.Minute

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import or pull agent images into omertad's containerd namespace; list them",
		Long: `Agent images live in containerd's namespace "omerta" (agents.namespace).
They come as OCI image archives (an OCI layout or ` + "`docker save`" + ` tar): the
image ships its own, which omertad imports at start, and an operator imports
more with omerta image import. No registry is needed; a site that has one
pulls from it with omerta image pull.`,
	}
	cmd.AddCommand(newImageImportCmd(), newImagePullCmd(), newImageListCmd())
	return cmd
}

func newImageImportCmd() *cobra.Command {
	var (
		f      apiFlags
		digest string
		name   string
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an OCI image archive (needs root)",
		Long: `import has omertad read FILE, an OCI image layout or ` + "`docker save`" + ` tar on
this machine, and import its images. Every blob is stored under its own
digest, so a tampered archive is refused; --digest also requires every image
in it to have that index, manifest or config digest. --name names the image
of an archive that names none. Each import is recorded in the audit log.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// omertad opens the file itself: give it a path that means the
			// same file from its working directory.
			path, err := filepath.Abs(args[0])
			if err != nil {
				return fmt.Errorf("image archive %s: %w", terminal.Escape(args[0]), err)
			}
			c, err := f.client(imageImportTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.ImportImage(cmd.Context(), apitype.ImageImport{Path: path, Digest: digest, Name: name})
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printImported(cmd, out)
		},
	}
	// omertad opens the path itself, as root on the socket: there is no
	// remote import (the console does not forward it).
	f.socketOnly = true
	f.add(cmd, true)
	cmd.Flags().StringVar(&digest, "digest", "", "the digest (sha256:...) every image of the archive must have")
	cmd.Flags().StringVar(&name, "name", "", "the name of the image, for an archive that names none")
	return cmd
}

// imagePullTimeout is a little over omertad's own bound on a pull
// (runtime.DefaultPullTimeout), so that its answer arrives.
const imagePullTimeout = 11 * time.Minute

func newImagePullCmd() *cobra.Command {
	var (
		f      apiFlags
		digest string
	)
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from the site's registry, pinned by digest",
		Long: `pull has omertad fetch REF, a full reference such as
registry.example/agents/tool:1.0, from its registry through containerd's
resolver (HTTPS; plain HTTP only for a registry on a loopback address) and
unpack it. With --digest the tag must resolve to that index, manifest or
config digest, or nothing is kept; a REF without a tag needs --digest.
Deploying an agent whose image is absent pulls it the same way, once, and
pins the digest. Each pull is recorded in the audit log.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(imagePullTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.PullImage(cmd.Context(), apitype.ImagePull{Ref: args[0], Digest: digest})
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printImages(cmd, []apitype.Image{out.Image})
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&digest, "digest", "", "the digest (sha256:...) the tag must resolve to")
	return cmd
}

func newImageListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the images in omertad's containerd namespace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Images(cmd.Context())
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), l)
			}
			return printImages(cmd, l.Images)
		},
	}
	f.add(cmd, true)
	return cmd
}

// printImported prints an import's images, and on stderr who signed the
// registry that vouches for the archive and the verification's warnings
// (an unsigned archive allowed by the profile).
func printImported(cmd *cobra.Command, out apitype.ImageImported) error {
	if out.Signer != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "omerta: verified: a registry signed with trusted key %s vouches for the archive\n", terminal.Escape(out.Signer))
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "omerta: warning: %s\n", terminal.Escape(w))
	}
	return printImages(cmd, out.Images)
}

func printImages(cmd *cobra.Command, imgs []apitype.Image) error {
	t := newTable(cmd.OutOrStdout(), 0, "NAME", "DIGEST", "MANIFEST")
	for _, i := range imgs {
		t.row(i.Name, i.Digest, i.Manifest)
	}
	return t.flush()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gpu/extension"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/terminal"
)

func newGPUCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Show the GPUs omertad hands out and the agents holding them",
		Long: `Show the NVIDIA GPUs omertad's GPU service found at its last refresh: each
GPU and MIG device admission hands out, its memory, and the agents it is
granted to; without a driver or a supported GPU, why not.`,
	}
	cmd.AddCommand(newGPUListCmd(), newGPUGetCmd(), newGPUExtensionCmd())
	return cmd
}

func newGPUExtensionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "extension",
		Short: "The NVIDIA driver's system extension",
		Long: `The image carries the NVIDIA driver as a systemd system extension,
` + extension.Dir + `/` + extension.Name + `.raw, merged into /usr
only on a machine with an NVIDIA GPU.`,
	}
	cmd.AddCommand(newGPUExtensionMergeCmd())
	return cmd
}

func newGPUExtensionMergeCmd() *cobra.Command {
	var force bool
	var root string
	cmd := &cobra.Command{
		Use:   "merge",
		Short: "Merge the NVIDIA driver extension if the PCI bus has an NVIDIA GPU",
		Long: `Merge ` + extension.Dir + `/` + extension.Name + `.raw (the NVIDIA driver
built for this image's kernel) when the PCI bus has an NVIDIA GPU (vendor
0x10de, a display class): after checking its manifest, its kernel against the
running one and its size and SHA-256 against the manifest, it links it into
` + extension.LinkDir + `, runs systemd-sysext refresh and, with a GPU, replays
the GPUs' uevents (udevadm trigger) so that the modules load now.

Without a GPU it merges nothing and exits 0; --force merges anyway (until the
next boot; the modules then have no device to bind). A refused or failed merge
exits 1 and leaves no link (except after a failed udevadm trigger: the
extension is merged by then and stays). One line on standard output says what
happened; ` + extension.StatePath + ` records it, and first boot
copies that into its report. omerta-nvidia-extension.service runs this early
at every boot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := rootfs.New(root)
			if err != nil {
				return err
			}
			s, err := extension.Merge(cmd.Context(), extension.Options{Root: r, Runner: extensionRunner(r), Force: force})
			fmt.Fprintln(cmd.OutOrStdout(), terminal.Escape(s.Line()))
			if err != nil && err.Error() == s.Reason {
				return exitCode(1) // the line said why
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "merge even with no NVIDIA GPU on the PCI bus")
	cmd.Flags().StringVar(&root, "root", "/", "resolve every path under this directory (tests; systemd-sysext and udevadm run only for \"/\")")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}

// extensionRunner runs systemd-sysext and udevadm for the merge; tests
// replace it. Under a root other than "/" it runs nothing: both programs
// act on the running system, not on a tree.
var extensionRunner = func(root rootfs.Root) extension.Runner {
	if !root.IsHost() {
		return refuseRunner{root.Dir()}
	}
	return execRunner{timeout: 2 * time.Minute}
}

// errNotHost is what refuseRunner answers.
var errNotHost = errors.New("runs only on the running system's root, /")

type refuseRunner struct{ root string }

func (r refuseRunner) Run(_ context.Context, name string, _ ...string) ([]byte, error) {
	return nil, fmt.Errorf("%s: %w, not under --root %q", name, errNotHost, r.root)
}

// execRunner runs a program of the running system, bounded in time (a
// refresh that hangs must not hold the boot).
type execRunner struct{ timeout time.Duration }

func (e execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func newGPUListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the GPUs and MIG devices with their memory and holders",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showCall(cmd, &f, (*apiclient.Client).GPUs, printGPUList)
		},
	}
	f.add(cmd, true)
	return cmd
}

func newGPUGetCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "get UUID",
		Short: "Show one GPU, by its UUID or one of its MIG devices'",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			g, err := c.GPU(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), g)
			}
			t := newGPUTable(cmd.OutOrStdout())
			gpuRows(t, g)
			return t.flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

// printGPUList writes the driver line, then a table of the GPUs, each
// followed by its MIG devices, then the lost units and the problems.
// Without a GPU it says why instead of printing an empty table.
func printGPUList(w io.Writer, l apitype.GPUList) error {
	switch {
	case l.RefreshedAt == nil:
		fmt.Fprintln(w, "GPUs not read yet: omertad is starting")
	case !l.Available && len(l.GPUs) == 0:
		fmt.Fprintln(w, "no GPU available: "+terminal.Escape(l.Reason))
	default:
		fmt.Fprintln(w, "driver "+terminal.Escape(orDash(l.DriverVersion))+", kernel modules "+terminal.Escape(orDash(l.KernelModules)))
	}
	if len(l.GPUs) > 0 {
		t := newGPUTable(w)
		for _, g := range l.GPUs {
			gpuRows(t, g)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	for _, lost := range l.Lost {
		fmt.Fprintf(w, "lost: %s (%s), held by %s: %s\n", terminal.Escape(lost.Label), terminal.Escape(lost.UUID),
			terminal.Escape(lost.Agent), terminal.Escape(orDash(lost.Problem)))
	}
	for _, p := range l.Problems {
		fmt.Fprintln(w, "problem: "+terminal.Escape(p))
	}
	return nil
}

func newGPUTable(w io.Writer) *table {
	return newTable(w, 48, "GPU", "UUID", "NAME", "MEMORY USED", "RESERVED", "HOLDERS")
}

// gpuRows adds a GPU's row and one per MIG device ("0/1": MIG device 1
// of GPU 0).
func gpuRows(t *table, g apitype.GPUView) {
	name := g.Name
	if g.MIGEnabled {
		name += " (MIG)"
	}
	t.row(strconv.Itoa(g.Index), g.UUID, name, memoryText(g.GPUMemory), gibText(g.MemoryReservedBytes), holdersText(g.Holders))
	for _, m := range g.MIG {
		t.row(strconv.Itoa(g.Index)+"/"+strconv.Itoa(m.Index), m.UUID, "  "+m.Profile, memoryText(m.GPUMemory),
			gibText(m.MemoryReservedBytes), holdersText(m.Holders))
	}
}

func memoryText(m apitype.GPUMemory) string {
	return gibText(m.MemoryUsedBytes) + " / " + gibText(m.MemoryTotalBytes)
}

// gibText shows bytes in GiB with one decimal: VRAM is sized in GiB.
func gibText(b uint64) string {
	return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + " GiB"
}

// holdersText is "agent (mode)" for each holder, "-" for none; a holder
// whose grant drifted is marked.
func holdersText(hs []apitype.GPUHolder) string {
	if len(hs) == 0 {
		return "-"
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Agent + " (" + h.Mode + ")"
		if h.Problem != "" {
			out[i] += " drifted"
		}
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

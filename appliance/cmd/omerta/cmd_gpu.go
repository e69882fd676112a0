package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
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
	cmd.AddCommand(newGPUListCmd(), newGPUGetCmd())
	return cmd
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

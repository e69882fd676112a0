package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/plugins"
)

// Runtime is the state of the container runtime.
type Runtime struct {
	Containerd Containerd `json:"containerd"`
}

// Containerd is what the daemon on Address answered, if it answered.
type Containerd struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	// Error says why it is not reachable; "no socket" when none exists,
	// which before first boot is the normal state.
	Error    string `json:"error,omitempty"`
	Version  string `json:"version,omitempty"`
	Revision string `json:"revision,omitempty"`
	// Snapshotter is the one agents run on, with its state.
	Snapshotter      string `json:"snapshotter,omitempty"`
	SnapshotterReady bool   `json:"snapshotter_ready"`
	SnapshotterError string `json:"snapshotter_error,omitempty"`
	// Snapshotters lists every snapshotter that loaded.
	Snapshotters []string `json:"snapshotters,omitempty"`
}

func probeRuntime(ctx context.Context, address string, timeout time.Duration, p *problems) Runtime {
	c := Containerd{Address: address}
	if address == "-" {
		c.Error = "not probed"
		return Runtime{Containerd: c}
	}
	// A missing socket is answered here, without gRPC's dial-and-retry.
	if strings.HasPrefix(address, "/") {
		if _, err := os.Stat(address); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				c.Error = "no socket at " + address
			} else {
				c.Error = err.Error()
			}
			return Runtime{Containerd: c}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := containerd.New(address, containerd.WithTimeout(timeout))
	if err != nil {
		c.Error = fmt.Sprintf("connecting: %v", err)
		return Runtime{Containerd: c}
	}
	defer cl.Close()
	v, err := cl.Version(ctx)
	if err != nil {
		c.Error = oneLine(fmt.Sprintf("asking the version: %v", err))
		return Runtime{Containerd: c}
	}
	c.Reachable = true
	c.Version, c.Revision = v.Version, v.Revision

	c.Snapshotter = defaults.DefaultSnapshotter
	resp, err := cl.IntrospectionService().Plugins(ctx, fmt.Sprintf("type==%s", plugins.SnapshotPlugin))
	if err != nil {
		p.addf("containerd: listing snapshotters: %s", oneLine(err.Error()))
		return Runtime{Containerd: c}
	}
	for _, pl := range resp.Plugins {
		if pl.InitErr == nil {
			c.Snapshotters = append(c.Snapshotters, pl.ID)
		}
		if pl.ID == c.Snapshotter {
			if pl.InitErr == nil {
				c.SnapshotterReady = true
			} else {
				c.SnapshotterError = oneLine(pl.InitErr.Message)
			}
		}
	}
	sort.Strings(c.Snapshotters)
	if !c.SnapshotterReady && c.SnapshotterError == "" {
		c.SnapshotterError = "not loaded"
	}
	return Runtime{Containerd: c}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

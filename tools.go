//go:build tools

// Package tools pins modules that later packages use, so that go.mod stays stable
// while several packages are written at once. It is never built.
package tools

import (
	_ "aead.dev/minisign"
	_ "github.com/NVIDIA/go-nvml/pkg/nvml"
	_ "github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	_ "github.com/containerd/containerd/v2/client"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/goccy/go-yaml"
	_ "github.com/gofiber/fiber/v2"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/nftables"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sys/unix"
)

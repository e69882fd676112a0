package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Agents configures how omertad runs agents on containerd.
type Agents struct {
	// Containerd is containerd's gRPC socket. omertad starts and serves
	// while it is down; agents are then reported unavailable.
	Containerd string `yaml:"containerd" json:"containerd"`
	// Namespace is the containerd namespace that holds omertad's images,
	// containers, snapshots and leases, and nothing else's.
	Namespace string `yaml:"namespace" json:"namespace"`
	// CatalogDir holds the catalog entries shipped in the image.
	CatalogDir string `yaml:"catalog_dir" json:"catalog_dir"`
	// BundledDir holds the OCI image archives (*.oci.tar) shipped in the
	// image, imported into containerd when omertad starts.
	BundledDir string `yaml:"bundled_dir" json:"bundled_dir"`
	// LogDir holds one log file per agent, written by containerd's shim.
	LogDir string `yaml:"log_dir" json:"log_dir"`
	// RunDir is the runtime's own directory: the gVisor wrapper and the
	// FIFOs of the processes it runs in containers.
	RunDir string `yaml:"run_dir" json:"run_dir"`
	// RuntimeRoot, when set, is where runc and runsc keep their state
	// (root/runc, root/runsc) instead of the shim's default under
	// /run/containerd; a second containerd on the machine needs it.
	RuntimeRoot string `yaml:"runtime_root" json:"runtime_root,omitempty"`
	// TelemetryInterval is how often agents' metrics are read for the
	// event stream and /metrics.
	TelemetryInterval time.Duration `yaml:"telemetry_interval" json:"telemetry_interval"`
	// Registries are the signed registry directories (REGISTRY.yaml,
	// registry.lock.json and its .minisig at their top) searched, in
	// order, for the signature of an agent's image at deploy. The image
	// ships its own at /usr/share/omerta; an empty list consults none, so
	// that every image is unsigned (refused by the enterprise profile).
	Registries []string `yaml:"registries" json:"registries"`
	// TrustDir holds the minisign public keys (*.pub) a registry's lock
	// must be signed with. A directory that does not exist trusts no key.
	TrustDir string `yaml:"trust_dir" json:"trust_dir"`
}

// Defaults of the agents section.
const (
	DefaultContainerdSocket  = "/run/containerd/containerd.sock"
	DefaultAgentNamespace    = "omerta"
	DefaultCatalogDir        = "/usr/share/omerta/catalog"
	DefaultBundledDir        = "/usr/share/omerta/agents"
	DefaultAgentLogDir       = "/var/log/omerta/agents"
	DefaultAgentRunDir       = "/run/omerta/runtime"
	DefaultTelemetryInterval = 10 * time.Second
	// DefaultRegistryDir is the registry the image ships, beside the
	// catalog and the bundled archives.
	DefaultRegistryDir = "/usr/share/omerta"
	// DefaultTrustDir holds the minisign public keys registries are
	// checked against on the appliance (registry.DefaultTrustDir).
	DefaultTrustDir = "/etc/omerta/trust"
)

// MaxRegistries bounds agents.registries: each is read at every deploy.
const MaxRegistries = 16

// DefaultAgents is the agents section when no file sets it.
func DefaultAgents() Agents {
	return Agents{
		Containerd:        DefaultContainerdSocket,
		Namespace:         DefaultAgentNamespace,
		CatalogDir:        DefaultCatalogDir,
		BundledDir:        DefaultBundledDir,
		LogDir:            DefaultAgentLogDir,
		RunDir:            DefaultAgentRunDir,
		TelemetryInterval: DefaultTelemetryInterval,
		Registries:        []string{DefaultRegistryDir},
		TrustDir:          DefaultTrustDir,
	}
}

// namespaceRE is what containerd accepts as a namespace (its identifiers
// package): alphanumeric words joined by '.', '_' or '-', at most 76
// characters. Checked here so that a bad name is refused when the file is
// read, naming the field, not when containerd is first asked.
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// Telemetry bounds: faster than once a second costs containerd more than
// it tells anyone; slower than every 10 minutes is not live.
const (
	minTelemetryInterval = time.Second
	maxTelemetryInterval = 10 * time.Minute
)

func (a *Agents) validate() error {
	if err := checkPath("agents.containerd", a.Containerd); err != nil {
		return err
	}
	if len(a.Containerd) > 107 {
		return bad("agents.containerd", a.Containerd, "is longer than the 107 bytes a unix socket path may have")
	}
	if len(a.Namespace) > 76 || !namespaceRE.MatchString(a.Namespace) {
		return bad("agents.namespace", a.Namespace, "must be at most 76 letters and digits, words joined by '.', '_' or '-' (a containerd namespace)")
	}
	for _, p := range []struct{ field, path string }{
		{"agents.catalog_dir", a.CatalogDir},
		{"agents.bundled_dir", a.BundledDir},
		{"agents.log_dir", a.LogDir},
		{"agents.run_dir", a.RunDir},
		{"agents.trust_dir", a.TrustDir},
	} {
		if err := checkPath(p.field, p.path); err != nil {
			return err
		}
	}
	if a.RuntimeRoot != "" {
		if err := checkPath("agents.runtime_root", a.RuntimeRoot); err != nil {
			return err
		}
	}
	if a.TelemetryInterval < minTelemetryInterval || a.TelemetryInterval > maxTelemetryInterval {
		return bad("agents.telemetry_interval", a.TelemetryInterval.String(), "must be between 1s and 10m")
	}
	return a.validateRegistries()
}

// validateRegistries accepts at most MaxRegistries clean absolute
// directories, each listed once.
func (a *Agents) validateRegistries() error {
	if err := tooMany("agents.registries", len(a.Registries), MaxRegistries); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, r := range a.Registries {
		field := fmt.Sprintf("agents.registries[%d]", i)
		if err := checkPath(field, r); err != nil {
			return err
		}
		if seen[r] {
			return bad(field, r, "is listed twice")
		}
		seen[r] = true
	}
	return nil
}

// normalised treats nil and empty lists alike.
func (a Agents) normalised() Agents {
	if len(a.Registries) == 0 {
		a.Registries = nil
	}
	return a
}

// checkPath accepts a clean absolute path of at most 4096 bytes without
// control characters: these paths are opened by root and written into
// messages.
func checkPath(field, p string) error {
	switch {
	case p == "" || !strings.HasPrefix(p, "/"):
		return bad(field, p, "must be an absolute path")
	case !printable(p) || len(p) > 4096:
		return bad(field, p, "must be a path of at most 4096 bytes without control characters")
	case filepath.Clean(p) != p:
		return bad(field, p, "must be a clean path: no '.' or '..' elements, no '//', no trailing '/'")
	}
	return nil
}

package extension

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// The outcomes a State records.
const (
	Merged    = "merged"
	NotMerged = "not-merged"
	Refused   = "refused"
	Failed    = "failed"
)

// Bounds of a state file a reader accepts (what Merge writes is far
// smaller: one reason, one PCI address per GPU).
const (
	maxReason = 2048
	maxGPUs   = 256
)

// State is what Merge did, as StatePath records it. The manifest's fields
// are empty when the manifest could not be read.
type State struct {
	Outcome       string    `json:"outcome"`
	Reason        string    `json:"reason"`
	Forced        bool      `json:"forced"`
	GPUs          []string  `json:"gpus"`
	Name          string    `json:"name"`
	DriverVersion string    `json:"driver_version"`
	Kernel        string    `json:"kernel"`
	Modules       string    `json:"modules"`
	SHA256        string    `json:"sha256"`
	At            time.Time `json:"at"`
}

// ParseState reads a state file as strictly as ParseManifest: first boot
// copies it into the signed report, so a file that Merge could not have
// written is refused rather than copied. The error is a *FieldError.
func ParseState(data []byte) (State, error) {
	var s State
	if err := decodeStrict(data, &s); err != nil {
		return State{}, &FieldError{File: "state", Reason: err.Error()}
	}
	if err := s.validate(); err != nil {
		return State{}, err
	}
	return s, nil
}

func (s State) validate() error {
	bad := func(field, reason string, args ...any) error {
		return &FieldError{File: "state", Field: field, Reason: fmt.Sprintf(reason, args...)}
	}
	switch {
	case s.Outcome != Merged && s.Outcome != NotMerged && s.Outcome != Refused && s.Outcome != Failed:
		return bad("outcome", "%q is not one of %s, %s, %s, %s", s.Outcome, Merged, NotMerged, Refused, Failed)
	case s.Reason == "" || len(s.Reason) > maxReason || !utf8.ValidString(s.Reason):
		return bad("reason", "empty, longer than %d bytes or not UTF-8", maxReason)
	case len(s.GPUs) > maxGPUs:
		return bad("gpus", "%d addresses, more than %d", len(s.GPUs), maxGPUs)
	case s.Name != "" && !nameRe.MatchString(s.Name):
		return bad("name", "%q is not a lowercase name", s.Name)
	case s.DriverVersion != "" && !driverRe.MatchString(s.DriverVersion):
		return bad("driver_version", "%q is not a driver version", s.DriverVersion)
	case s.Kernel != "" && !probe.KernelRelease.MatchString(s.Kernel):
		return bad("kernel", "%q is not a kernel release", s.Kernel)
	case s.Modules != "" && s.Modules != ModulesOpen && s.Modules != ModulesProprietary:
		return bad("modules", "%q is neither %s nor %s", s.Modules, ModulesOpen, ModulesProprietary)
	case s.SHA256 != "" && !sha256Re.MatchString(s.SHA256):
		return bad("sha256", "%q is not 64 lowercase hex digits", s.SHA256)
	case s.At.IsZero():
		return bad("at", "missing")
	}
	if _, off := s.At.Zone(); off != 0 {
		return bad("at", "%s is not in UTC", s.At.Format(time.RFC3339))
	}
	for i, g := range s.GPUs {
		if !probe.PCIAddress.MatchString(g) {
			return bad(fmt.Sprintf("gpus[%d]", i), "%q is not a PCI address such as 0000:1b:00.0", g)
		}
	}
	return nil
}

// ReadState reads StatePath inside root, bounded (a regular file of at
// most 64 KiB) and strictly (ParseState). It returns an error wrapping
// fs.ErrNotExist when Merge has not run this boot.
func ReadState(root rootfs.Root) (State, error) {
	data, err := root.ReadFile(StatePath, maxState)
	if err != nil {
		return State{}, fmt.Errorf("reading %s: %w", StatePath, err)
	}
	s, err := ParseState(data)
	if err != nil {
		return State{}, fmt.Errorf("%s: %w", StatePath, err)
	}
	return s, nil
}

// writeState replaces StatePath atomically (rootfs.WriteFile: the
// atomicfile way, temporary file, fsync, rename, inside the root), 0644
// in /run/omerta 0755.
func writeState(root rootfs.Root, s State) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", StatePath, err)
	}
	if err := root.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", StatePath, err)
	}
	if _, err := root.WriteFile(StatePath, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", StatePath, err)
	}
	return nil
}

// Line says what a State means, in one line for a terminal (unescaped:
// the caller escapes it).
func (s State) Line() string {
	what := "NVIDIA extension"
	if s.Name != "" {
		what = fmt.Sprintf("NVIDIA extension %s (driver %s, %s modules)", s.Name, s.DriverVersion, s.Modules)
	}
	verb := map[string]string{Merged: "merged", NotMerged: "not merged", Refused: "refused", Failed: "failed"}[s.Outcome]
	return fmt.Sprintf("%s %s: %s", what, verb, s.Reason)
}

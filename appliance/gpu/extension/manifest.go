package extension

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/omertaos/omertaos/appliance/probe"
)

// Manifest describes the extension image beside it; the image build
// writes it.
type Manifest struct {
	Name          string `json:"name"`
	File          string `json:"file"`
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	DriverVersion string `json:"driver_version"`
	Kernel        string `json:"kernel"`
	Modules       string `json:"modules"`
}

// The kinds of kernel modules an extension carries.
const (
	ModulesOpen        = "open"
	ModulesProprietary = "proprietary"
)

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
	driverRe = regexp.MustCompile(`^[0-9]{3}\.[0-9]{1,3}(\.[0-9]{1,3})?$`)
)

// FieldError is a refused manifest or state file: which field, and why.
// It wraps ErrInvalid.
type FieldError struct {
	File   string // "manifest" or "state"
	Field  string // the JSON member, "" for the document as a whole
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// ParseManifest reads a manifest strictly: one JSON object, no unknown or
// repeated member, nothing after it, every field checked. The error is a
// *FieldError naming the first field refused.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if err := decodeStrict(data, &m); err != nil {
		return Manifest{}, &FieldError{File: "manifest", Reason: err.Error()}
	}
	checks := []struct {
		ok            bool
		field, reason string
	}{
		{nameRe.MatchString(m.Name), "name", fmt.Sprintf("%q is not a lowercase name (a-z, 0-9, -) of 1 to 64 characters", m.Name)},
		{m.File == m.Name+".raw", "file", fmt.Sprintf("%q is not the name with .raw", m.File)},
		{m.Size >= 1 && m.Size <= maxImage, "size", fmt.Sprintf("%d is not between 1 and %d bytes", m.Size, int64(maxImage))},
		{sha256Re.MatchString(m.SHA256), "sha256", fmt.Sprintf("%q is not 64 lowercase hex digits", m.SHA256)},
		{driverRe.MatchString(m.DriverVersion), "driver_version", fmt.Sprintf("%q is not a driver version such as 550.163.01", m.DriverVersion)},
		{probe.KernelRelease.MatchString(m.Kernel), "kernel", fmt.Sprintf("%q is not a kernel release such as 6.12.57+deb13-amd64", m.Kernel)},
		{m.Modules == ModulesOpen || m.Modules == ModulesProprietary, "modules", fmt.Sprintf("%q is neither %s nor %s", m.Modules, ModulesOpen, ModulesProprietary)},
	}
	for _, c := range checks {
		if !c.ok {
			return Manifest{}, &FieldError{File: "manifest", Field: c.field, Reason: c.reason}
		}
	}
	return m, nil
}

// decodeStrict decodes the one JSON object in data into v, refusing
// unknown members (DisallowUnknownFields), a member given twice (Go keeps
// the last, other readers the first) and anything after the object.
func decodeStrict(data []byte, v any) error {
	if err := noDuplicateMembers(data); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// noDuplicateMembers checks the members of the top-level object; the
// files read here nest nothing but a list of strings.
func noDuplicateMembers(data []byte) error {
	d := json.NewDecoder(bytes.NewReader(data))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if seen[k] {
			return fmt.Errorf("member %q given twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

// tail is the end of a program's output, for an error.
func tail(out []byte) string {
	const n = 512
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.TrimSpace(string(out))
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Source says where a layer of the configuration came from.
type Source struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
	// SHA256 of the file as read, so a report can prove which file was used.
	SHA256 string `json:"sha256,omitempty"`
	// Error, when set, explains why this layer was ignored.
	Error string `json:"error,omitempty"`
}

// Resolved is the outcome of Resolve: the configuration in force and what
// each layer contributed.
type Resolved struct {
	Config  Config   `json:"config"`
	Sources []Source `json:"sources"`
}

// Problems returns the errors of every ignored layer.
func (r Resolved) Problems() []string {
	var out []string
	for _, s := range r.Sources {
		if s.Error != "" {
			out = append(out, s.Error)
		}
	}
	return out
}

// Layer is one configuration file's content as read, so that a caller can
// keep it (first boot journals the image's own file before replacing it) and
// resolve the same layers again later.
type Layer struct {
	// Path names the file in messages and in Source.
	Path    string `json:"path"`
	Present bool   `json:"present"`
	Data    []byte `json:"data,omitempty"`
	// ReadError is why a present file could not be read, or why it was
	// set aside after reading (Data is then kept, for its SHA-256).
	ReadError string `json:"read_error,omitempty"`
}

// ReadLayer reads the file at path; a missing file is an absent layer. name
// labels the layer (the path as the appliance sees it); empty means path.
// The read never blocks and is bounded: a FIFO, a device or a directory, or
// a file over MaxFileSize, is a present layer with a ReadError.
func ReadLayer(path, name string) Layer {
	if name == "" {
		name = path
	}
	data, err := safeio.ReadFile(path, MaxFileSize)
	return LayerFrom(name, data, err)
}

// LayerFrom makes the layer named name from the result of reading it, for
// a caller that reads through something other than a host path (first boot
// reads the ESP and /etc through rootfs, so that a link in an image tree
// cannot lead out of it). The read must be capped at MaxFileSize and refuse
// non-regular files, as safeio and rootfs do.
func LayerFrom(name string, data []byte, err error) Layer {
	l := Layer{Path: name}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		l.Present = true
		l.ReadError = readError(name, err)
	default:
		l.Present = true
		l.Data = data
	}
	return l
}

// readError says why a file could not be read, naming it name (as the
// appliance sees it), not by the path this process reached it through.
func readError(name string, err error) string {
	var pe *fs.PathError
	var nr *safeio.NotRegularError
	switch {
	case errors.As(err, &nr):
		return fmt.Sprintf("%s: is a %s, not a regular file", name, nr.Kind)
	case errors.Is(err, safeio.ErrNotRegular):
		return fmt.Sprintf("%s: is not a regular file", name)
	case errors.Is(err, safeio.ErrTooLarge):
		return fmt.Sprintf("%s: larger than the limit of %d bytes", name, MaxFileSize)
	case errors.As(err, &pe):
		return fmt.Sprintf("reading %s: %v", name, pe.Err)
	}
	return fmt.Sprintf("reading %s: %v", name, err)
}

// Resolve layers the files in paths over the defaults; see ResolveLayers.
func Resolve(paths ...string) Resolved {
	layers := make([]Layer, len(paths))
	for i, p := range paths {
		layers[i] = ReadLayer(p, "")
	}
	return ResolveLayers(layers...)
}

// ResolveLayers layers the configuration files over the defaults, later
// layers winning field by field. It never fails: an absent layer is skipped,
// and a bad one is ignored whole (the layers below it stay in force) with its
// error recorded in its Source, so that first boot can go on with safe values
// and say why.
func ResolveLayers(layers ...Layer) Resolved {
	r := Resolved{Config: Default()}
	for _, l := range layers {
		src := Source{Path: l.Path, Present: l.Present, Error: l.ReadError}
		if l.Present && (l.Data != nil || l.ReadError == "") {
			src.SHA256 = sha256Hex(l.Data)
		}
		if l.Present && l.ReadError == "" {
			cfg, err := Parse(l.Data, l.Path, r.Config)
			if err != nil {
				src.Error = err.Error()
			} else {
				r.Config = cfg
			}
		}
		r.Sources = append(r.Sources, src)
	}
	return r
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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

// Resolve layers the files in paths over the defaults, later files winning
// field by field. It never fails: a missing file is skipped, and a bad file is
// ignored whole (the layers below it stay in force) with its error recorded in
// its Source, so that first boot can go on with safe values and say why.
func Resolve(paths ...string) Resolved {
	r := Resolved{Config: Default()}
	for _, p := range paths {
		src := Source{Path: p}
		data, err := os.ReadFile(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			src.Present = true
			src.Error = fmt.Sprintf("reading %s: %v", p, err)
		default:
			src.Present = true
			src.SHA256 = sha256Hex(data)
			cfg, perr := Parse(data, p, r.Config)
			if perr != nil {
				src.Error = perr.Error()
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

// Package catalog holds the agents an operator can deploy: the entries
// shipped in the image (DefaultDir), the files an operator imports, and the
// OMERTAOS formats (an agents.yaml with its recipes, AgentRecipe and
// AgentTemplate documents), each turned into a checked manifest with every
// field that could not be kept exactly named in a Note.
package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
	"github.com/omertaos/omertaos/appliance/terminal"
	"golang.org/x/sys/unix"
)

// DefaultDir is where the image ships its catalog.
const DefaultDir = "/usr/share/omerta/catalog"

// Bounds on what is read.
const (
	MaxFileBytes = 1 << 20
	maxDirFiles  = 1024
)

func fileLimits() safeyaml.Limits {
	return safeyaml.Limits{MaxBytes: MaxFileBytes, MaxDepth: 32, MaxNodes: 100000, MaxSeqLen: maxEntries}
}

// Format names the kind of document an entry was read from.
type Format string

// The formats read.
const (
	FormatManifest        Format = "omertaos.dev/v1 Agent"
	FormatOMERTAOSCatalog Format = "OMERTAOS agent catalog entry"
	FormatAgentRecipe     Format = "OMERTAOS AgentRecipe"
	FormatAgentTemplate   Format = "OMERTAOS AgentTemplate (aion.os/v1)"
)

// Entry is one agent of the catalog.
type Entry struct {
	// Manifest is normalised; it is meaningful only when Problems is empty.
	Manifest *manifest.Manifest
	// File is the file it was read from; Source its place in that file
	// ("agents[2]"), empty for a file that holds one agent.
	File   string
	Source string
	Format Format
	// Notes name the fields of a foreign format that were dropped or
	// approximated; Problems the refusals.
	Notes    []Note
	Problems manifest.Problems
}

// OK reports whether the entry was read without refusals.
func (e *Entry) OK() bool { return len(e.Problems) == 0 }

// Deployable says whether the entry can be deployed, and why not.
func (e *Entry) Deployable() (bool, string) {
	switch {
	case !e.OK():
		return false, "not deployable: invalid"
	case e.Manifest.Spec.Image == nil:
		return false, "not deployable: no image"
	}
	return true, ""
}

// ErrNoFormat is in a File's problem when a document is in no known format.
var ErrNoFormat = errors.New("not a format omerta reads")

// File is what one file held.
type File struct {
	Path    string
	Entries []Entry
	// Problems concern the file as a whole (it does not parse, or is in no
	// known format); each entry carries its own.
	Problems manifest.Problems
	Notes    []Note
}

// OK reports whether the file and all its entries were read without
// refusals.
func (f *File) OK() bool {
	if len(f.Problems) > 0 {
		return false
	}
	for i := range f.Entries {
		if !f.Entries[i].OK() {
			return false
		}
	}
	return true
}

// ReadFile reads one catalog file: a manifest, an OMERTAOS agents.yaml
// (whose recipes are read from beside it, never from outside its
// directory), an AgentRecipe or an AgentTemplate. The error is for a file
// that cannot be read at all; what is wrong inside it is in the File.
func ReadFile(path string) (*File, error) {
	data, err := safeio.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("reading catalog file %s: %w", strconv.Quote(path), err)
	}
	return Parse(path, data, DirReader(filepath.Dir(path))), nil
}

// dirReader reads files named relative to dir, through an os.Root so that
// neither ".." nor a symbolic link leads out of it.
func DirReader(dir string) RelReader {
	return func(rel string) ([]byte, error) {
		if !filepath.IsLocal(rel) {
			return nil, ErrOutsideDir
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			// A symbolic link out of dir fails here too; os.Root has no
			// exported error for it, so it reads as "cannot be read".
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w", safeio.ErrNotRegular)
		}
		return safeio.ReadAll(f, rel, MaxFileBytes)
	}
}

// Parse reads one catalog document from data (an upload, say); name labels
// it, and readRel (nil for none: recipes are then noted as not read) reads
// the recipes an agents.yaml names.
func Parse(name string, data []byte, readRel RelReader) *File {
	f := &File{Path: name}
	tree, err := manifest.ParseTree(data, fileLimits())
	if err != nil {
		f.Problems = manifest.Problems{manifest.SyntaxProblem(err)}
		return f
	}
	im := newImporter()
	top := im.obj("", tree)
	if len(im.probs) > 0 {
		f.Problems = im.probs
		return f
	}
	apiVersion, _ := top.m["apiVersion"].(string)
	kind, _ := top.m["kind"].(string)
	switch {
	case apiVersion == manifest.APIVersion:
		f.Entries = []Entry{nativeEntry(tree)}
	case apiVersion == "aion.os/v1" && kind == "AgentTemplate":
		m := importTemplate(im, top)
		f.Entries = []Entry{{Manifest: m, Format: FormatAgentTemplate, Notes: im.notes, Problems: im.probs}}
	case kind == "AgentRecipe":
		m := importRecipe(im, top)
		f.Entries = []Entry{{Manifest: m, Format: FormatAgentRecipe, Notes: im.notes, Problems: im.probs}}
	case top.has("agents") && !top.has("apiVersion") && !top.has("kind"):
		f.Entries = importCatalog(top, readRel)
		f.Notes, f.Problems = im.notes, im.probs
	default:
		f.Problems = manifest.Problems{{Code: manifest.CodeInvalid, Reason: fmt.Sprintf("%s: apiVersion %s, kind %s; expected apiVersion %s kind %s, an OMERTAOS agents.yaml (agents: [...]), kind AgentRecipe, or apiVersion aion.os/v1 kind AgentTemplate",
			ErrNoFormat, strconv.Quote(apiVersion), strconv.Quote(kind), manifest.APIVersion, manifest.Kind)}}
	}
	for i := range f.Entries {
		f.Entries[i].File = name
	}
	return f
}

func nativeEntry(tree any) Entry {
	e := Entry{Format: FormatManifest}
	m, err := manifest.FromTree(tree)
	if err != nil {
		var ps manifest.Problems
		if !errors.As(err, &ps) {
			ps = manifest.Problems{{Code: manifest.CodeInvalid, Reason: sanitize(err.Error())}}
		}
		e.Problems = ps
		return e
	}
	e.Manifest = m
	return e
}

func sanitize(s string) string { return terminal.Escape(s) }

// ErrDuplicate is returned by Add for an id already in the catalog.
var ErrDuplicate = errors.New("an agent with this id is already in the catalog")

// Catalog is a set of entries by id.
type Catalog struct {
	entries map[string]*Entry
}

// New returns an empty catalog.
func New() *Catalog { return &Catalog{entries: map[string]*Entry{}} }

// Add puts a valid entry in the catalog; an id already there is refused.
func (c *Catalog) Add(e Entry) error {
	if !e.OK() {
		return fmt.Errorf("adding %s to the catalog: %w", strconv.Quote(e.File), e.Problems)
	}
	id := e.Manifest.Metadata.ID
	if old, ok := c.entries[id]; ok {
		return fmt.Errorf("adding %s from %s: %w (from %s)", strconv.Quote(id), strconv.Quote(e.File), ErrDuplicate, strconv.Quote(old.File))
	}
	c.entries[id] = &e
	return nil
}

// Get returns the entry with id.
func (c *Catalog) Get(id string) (*Entry, bool) {
	e, ok := c.entries[id]
	return e, ok
}

// List returns the entries sorted by id.
func (c *Catalog) List() []*Entry {
	out := make([]*Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Manifest.Metadata.ID < out[j].Manifest.Metadata.ID })
	return out
}

// LoadDir reads every .yaml, .yml and .json regular file directly in dir
// (not in subdirectories, which hold an agents.yaml's recipes, and not
// through symbolic links) into a catalog. A bad
// file or entry does not stop the others: each File says what was wrong,
// and an entry whose id is taken gets a problem. The error is for a
// directory that cannot be read.
func LoadDir(dir string) (*Catalog, []*File, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading catalog directory %s: %w", strconv.Quote(dir), err)
	}
	c := New()
	var files []*File
	for _, de := range ents {
		if !de.Type().IsRegular() || !isCatalogFile(de.Name()) {
			continue
		}
		if len(files) == maxDirFiles {
			return c, files, fmt.Errorf("reading catalog directory %s: more than %d files", strconv.Quote(dir), maxDirFiles)
		}
		f, err := ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			f = &File{Path: filepath.Join(dir, de.Name()), Problems: manifest.Problems{{Code: manifest.CodeInvalid, Reason: sanitize(err.Error())}}}
		}
		c.addFile(f)
		files = append(files, f)
	}
	return c, files, nil
}

// addFile adds f's valid entries, recording a duplicate id on its entry.
func (c *Catalog) addFile(f *File) {
	for i := range f.Entries {
		e := &f.Entries[i]
		if !e.OK() {
			continue
		}
		if err := c.Add(*e); errors.Is(err, ErrDuplicate) {
			e.Problems = append(e.Problems, manifest.Problem{Path: idPath(e), Code: manifest.CodeDuplicate, Reason: sanitize(err.Error())})
		}
	}
}

func idPath(e *Entry) string {
	if e.Format == FormatOMERTAOSCatalog {
		return manifest.Key(e.Source, "id")
	}
	return "metadata.id"
}

func isCatalogFile(name string) bool {
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

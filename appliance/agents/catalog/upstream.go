package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// draft07 is the JSON Schema draft the OMERTAOS catalog writes its
// config_schema in; it is made explicit so that the compiler reads it so.
const draft07 = "http://json-schema.org/draft-07/schema#"

// maxEntries bounds the entries of one catalog file.
const maxEntries = 256

// RelReader reads a file named relative to the document being imported
// (an agents.yaml's recipes), refusing one outside its directory
// (DirReader makes one).
type RelReader func(rel string) ([]byte, error)

// ErrOutsideDir is returned by a RelReader for a path that leaves the
// catalog's directory.
var ErrOutsideDir = errors.New("the path leaves the catalog's directory")

// importCatalog reads an OMERTAOS agents.yaml: a list of entries under
// "agents", each with the catalog fields and a recipe.
func importCatalog(top *obj, readRel RelReader) []Entry {
	v, _ := top.get("agents")
	list, ok := v.([]any)
	if !ok {
		top.im.problem("agents", manifest.CodeType, "must be a list of catalog entries, not "+kindOf(v))
		return nil
	}
	if len(list) > maxEntries {
		top.im.problem("agents", manifest.CodeTooMany, fmt.Sprintf("%d entries; at most %d", len(list), maxEntries))
		return nil
	}
	top.rest()
	entries := make([]Entry, 0, len(list))
	seen := map[string]string{}
	for i, e := range list {
		im := newImporter()
		path := manifest.Index("agents", i)
		m := catalogEntry(im, im.obj(path, e), readRel)
		if id := m.Metadata.ID; len(im.probs) == 0 {
			if first, dup := seen[id]; dup {
				im.problem(manifest.Key(path, "id"), manifest.CodeDuplicate, fmt.Sprintf("%s is also the id of %s", strconv.Quote(id), first))
			}
			seen[id] = path
		}
		entries = append(entries, Entry{Manifest: m, Source: path, Format: FormatOMERTAOSCatalog, Notes: im.notes, Problems: im.probs})
	}
	return entries
}

func catalogEntry(im *importer, o *obj, readRel RelReader) *manifest.Manifest {
	m := &manifest.Manifest{APIVersion: manifest.APIVersion, Kind: manifest.Kind}
	md := &m.Metadata
	for _, f := range []struct {
		key, mpath string
		dst        *string
	}{
		{"id", "metadata.id", &md.ID}, {"name", "metadata.name", &md.Name}, {"category", "metadata.category", &md.Category},
		{"framework", "metadata.framework", &md.Framework}, {"description", "metadata.description", &md.Description},
		{"icon", "metadata.icon", &md.Icon}, {"version", "metadata.version", &md.Version},
	} {
		*f.dst = o.str(f.key)
		im.set(f.mpath, o.at(f.key))
	}
	md.Tags = o.strs("tags")
	im.set("metadata.tags", o.at("tags"))
	md.Capabilities = o.strs("capabilities")
	im.set("metadata.capabilities", o.at("capabilities"))
	if v, ok := o.get("config_schema"); ok {
		m.Spec.ConfigSchema = configSchema(im, o.at("config_schema"), v)
	}
	if rel := o.str("recipe"); rel != "" {
		importRecipeRef(im, o.at("recipe"), rel, md.ID, readRel)
	}
	o.rest()
	im.check(m)
	return m
}

func configSchema(im *importer, path string, v any) map[string]any {
	im.set("spec.configSchema", path)
	s, ok := v.(map[string]any)
	if !ok {
		im.problem(path, manifest.CodeType, "must be a mapping (a JSON Schema), not "+kindOf(v))
		return nil
	}
	if _, set := s["$schema"]; !set {
		s["$schema"] = draft07
	}
	return s
}

// importRecipeRef reads the recipe an entry names. What a recipe says
// (how the OMERTAOS kernel runs the agent) has no counterpart here, so each
// of its fields is noted; a recipe that cannot be read is noted too, but a
// path out of the catalog's directory is refused.
func importRecipeRef(im *importer, path, rel, id string, readRel RelReader) {
	if readRel == nil {
		im.note(path, Dropped, fmt.Sprintf("recipe %s not read: the catalog was not read from a directory", strconv.Quote(rel)))
		return
	}
	data, err := readRel(rel)
	switch {
	case errors.Is(err, ErrOutsideDir):
		im.problem(path, manifest.CodeInvalid, fmt.Sprintf("%s leaves the catalog's directory; recipes are read only from inside it", strconv.Quote(rel)))
		return
	case errors.Is(err, fs.ErrNotExist):
		im.note(path, Dropped, fmt.Sprintf("recipe %s not found", strconv.Quote(rel)))
		return
	case err != nil:
		im.problem(path, manifest.CodeInvalid, fmt.Sprintf("recipe %s cannot be read: %s", strconv.Quote(rel), sanitize(err.Error())))
		return
	}
	rpath := manifest.Key(path, filepath.ToSlash(rel))
	tree, err := manifest.ParseTree(data, fileLimits())
	if err != nil {
		p := manifest.SyntaxProblem(err)
		im.problem(rpath, manifest.CodeSyntax, p.String())
		return
	}
	r := im.obj(rpath, tree)
	agent := recipeHeader(r)
	if rid := agent.str("id"); rid != "" && rid != id {
		im.problem(agent.at("id"), manifest.CodeInvalid, fmt.Sprintf("%s is not the id of the entry that names this recipe (%s)", strconv.Quote(rid), strconv.Quote(id)))
	}
	agent.drop("name", "the catalog entry's name is used")
	agent.drop("description", "the catalog entry's description is used")
	recipeBody(agent)
	r.rest()
}

// recipeHeader checks kind and version and returns the agent mapping.
func recipeHeader(r *obj) *obj {
	if k := r.str("kind"); k != "AgentRecipe" {
		r.im.problem(r.at("kind"), manifest.CodeInvalid, fmt.Sprintf("%s is not AgentRecipe", strconv.Quote(k)))
	}
	if v := r.str("version"); v != "v1" {
		r.im.note(r.at("version"), Approximated, fmt.Sprintf("%s is not v1; read as v1", strconv.Quote(v)))
	}
	return r.child("agent")
}

// recipeBody notes the recipe fields that describe how the OMERTAOS kernel
// runs an agent.
func recipeBody(agent *obj) {
	rt := agent.child("runtime")
	rt.drop("mode", "the OMERTAOS runtime mode (kernel or external) has no counterpart: here an agent is an OCI image run by containerd (set spec.image)")
	rt.drop("entrypoint", "a script of the OMERTAOS kernel; the agent's command comes with its image (spec.command)")
	rt.drop("endpoint", "an external endpoint is not an agent this appliance runs")
	rt.rest()
	model := agent.child("model")
	model.drop("selector", "model selection belongs to the model gateway (a later issue)")
	model.rest()
	agent.drop("tools", "the OMERTAOS kernel's tool grants have no counterpart; an agent's tools are in its image")
	agent.drop("outputs", "object-store outputs have no counterpart; omertad keeps task results")
	agent.rest()
}

// importRecipe reads a recipe on its own: an entry with the recipe's id,
// name and description, and nothing to run.
func importRecipe(im *importer, r *obj) *manifest.Manifest {
	m := &manifest.Manifest{APIVersion: manifest.APIVersion, Kind: manifest.Kind}
	agent := recipeHeader(r)
	m.Metadata.ID = agent.str("id")
	im.set("metadata.id", agent.at("id"))
	m.Metadata.Name = agent.str("name")
	im.set("metadata.name", agent.at("name"))
	m.Metadata.Description = agent.str("description")
	im.set("metadata.description", agent.at("description"))
	recipeBody(agent)
	r.rest()
	im.check(m)
	return m
}

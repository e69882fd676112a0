package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

type catalogData struct {
	Entries    []apitype.CatalogEntry
	Total      int
	Query      string
	Category   string
	Framework  string
	Categories []string
	Frameworks []string
}

const maxSearch = 200

func (s *Server) catalogPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actCatalogRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the catalog. Ask an administrator if you need it.")
	}
	l, err := api(c).Catalog(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	d := catalogData{Total: len(l.Entries), Query: trimTo(c.Query("q"), maxSearch), Category: trimTo(c.Query("category"), maxSearch),
		Framework: trimTo(c.Query("framework"), maxSearch)}
	cats, fws := map[string]bool{}, map[string]bool{}
	q := strings.ToLower(d.Query)
	for _, e := range l.Entries {
		if e.Category != "" {
			cats[e.Category] = true
		}
		if e.Framework != "" {
			fws[e.Framework] = true
		}
		if (d.Category == "" || e.Category == d.Category) && (d.Framework == "" || e.Framework == d.Framework) && matches(e, q) {
			d.Entries = append(d.Entries, e)
		}
	}
	d.Categories, d.Frameworks = sortedSet(cats), sortedSet(fws)
	return s.render(c, fiber.StatusOK, "catalog", &page{Title: "Catalog", Nav: "catalog", Who: w, CSRF: w.CSRFToken, D: d})
}

func trimTo(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

func matches(e apitype.CatalogEntry, q string) bool {
	if q == "" {
		return true
	}
	hay := strings.ToLower(strings.Join(append([]string{e.ID, e.Name, e.Description, e.Category, e.Framework}, e.Tags...), " "))
	for _, word := range strings.Fields(q) {
		if !strings.Contains(hay, word) {
			return false
		}
	}
	return true
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// entryManifest is what the entry page reads from the normalized manifest.
type entryManifest struct {
	Spec struct {
		Config       map[string]any `json:"config"`
		ConfigSchema map[string]any `json:"configSchema"`
		Resources    struct {
			CPU    string `json:"cpu"`
			Memory string `json:"memory"`
			PIDs   int    `json:"pids"`
			GPUs   int    `json:"gpus"`
		} `json:"resources"`
		Network struct {
			Mode string `json:"mode"`
		} `json:"network"`
		Tasks *struct {
			Timeout string `json:"timeout"`
		} `json:"tasks"`
	} `json:"spec"`
}

type entryData struct {
	Entry    apitype.CatalogEntryView
	Manifest entryManifest
	Fields   []formField
	Problems []problemView
	AgentID  string
	// CanDeploy: the role may deploy and the entry can be deployed.
	CanDeploy bool
}

func (s *Server) loadEntry(c *fiber.Ctx) (*entryData, error) {
	e, err := api(c).CatalogEntry(c.UserContext(), c.Params("id"))
	if err != nil {
		return nil, err
	}
	d := &entryData{Entry: e}
	_ = json.Unmarshal(e.Manifest, &d.Manifest) // omertad normalized it; a surprise shows as no form
	// The form starts from the schema's defaults, overlaid with the
	// entry's own configuration.
	values := map[string]any{}
	props, _ := d.Manifest.Spec.ConfigSchema["properties"].(map[string]any)
	for k, v := range props {
		if p, ok := v.(map[string]any); ok {
			if dv, ok := p["default"]; ok {
				values[k] = dv
			}
		}
	}
	for k, v := range d.Manifest.Spec.Config {
		values[k] = v
	}
	d.Fields = schemaFields(d.Manifest.Spec.ConfigSchema, values, false)
	d.CanDeploy = can(who(c), actAgentsWrite) && e.Deployable
	return d, nil
}

func (s *Server) catalogEntryPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actCatalogRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the catalog.")
	}
	d, err := s.loadEntry(c)
	if err != nil {
		return s.backendError(c, err)
	}
	return s.render(c, fiber.StatusOK, "entry", &page{Title: d.Entry.Name, Nav: "catalog", Who: w, CSRF: w.CSRFToken, D: d})
}

// deploySubmit deploys the entry with the form's configuration. The form
// is read against the schema (types, blanks, secrets apart) and then
// omertad validates the configuration; its problems come back beside the
// fields.
func (s *Server) deploySubmit(c *fiber.Ctx) error {
	w := who(c)
	d, err := s.loadEntry(c)
	if err != nil {
		return s.backendError(c, err)
	}
	d.AgentID = trimTo(c.FormValue("agent_id"), maxParam)
	again := func(status int, msg string) error {
		return s.render(c, status, "entry", &page{Title: d.Entry.Name, Nav: "catalog", Who: w, CSRF: w.CSRFToken, Error: msg, D: d})
	}
	if !d.CanDeploy {
		return again(fiber.StatusForbidden, "This entry cannot be deployed by you: your role may not deploy agents, or the entry is not deployable.")
	}
	if d.AgentID != "" && !validParam(d.AgentID) {
		return again(fiber.StatusBadRequest, "The agent id may hold lowercase letters, digits and '-' only.")
	}
	config, secrets, local := readForm(d.Fields, formGetter(c), false)
	if len(local) > 0 {
		attachProblems(d.Fields, local, nil)
		return again(fiber.StatusBadRequest, "Some fields need attention; see the notes beside them.")
	}
	if len(secrets) > 0 && !can(w, actSecretsWrite) {
		return again(fiber.StatusForbidden, "Your role may not set secrets.")
	}
	req := apitype.AgentDeploy{Entry: d.Entry.ID, ID: d.AgentID, Config: config}
	if len(secrets) > 0 {
		req.Secrets = secrets
	}
	a, err := api(c).DeployAgent(c.UserContext(), req)
	if err != nil {
		st, msg := explain(err)
		d.Problems = attachProblems(d.Fields, nil, problemsOf(err))
		if len(d.Problems) > 0 || st == http.StatusBadRequest {
			msg = "omertad refused this configuration: " + messageOf(err)
		}
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		return again(st, msg)
	}
	return c.Redirect("/agents/"+url.PathEscape(a.ID)+"?done=deployed", fiber.StatusSeeOther)
}

// problemsOf is the field problems of a 400 from omertad.
func problemsOf(err error) []problemView {
	var ie *apiclient.InvalidError
	if !errors.As(err, &ie) {
		return nil
	}
	out := make([]problemView, 0, len(ie.Problems))
	for _, p := range ie.Problems {
		out = append(out, problemView{Path: p.Path, Reason: p.Reason})
	}
	return out
}

package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

type agentsData struct {
	Agents []apitype.AgentSummary
}

func (s *Server) agentsPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actAgentsRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not list agents.")
	}
	l, err := api(c).Agents(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	return s.render(c, fiber.StatusOK, "agents", &page{Title: "Agents", Nav: "agents", Who: w, CSRF: w.CSRFToken, Live: "agents", D: agentsData{Agents: l.Agents}})
}

// agentManifest is what the agent page reads from the agent's manifest.
type agentManifest struct {
	Spec struct {
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
		Ports []struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"ports"`
		Tasks *struct {
			Timeout string `json:"timeout"`
		} `json:"tasks"`
	} `json:"spec"`
}

type agentData struct {
	Agent    apitype.Agent
	Manifest agentManifest
	Fields   []formField
	Problems []problemView
	Tasks    part[[]apitype.Task]
	Logs     part[string]
	// Resources as the patch form shows them.
	CPU, Memory, PIDs string
}

// Agent actions of the agent page's forms.
const (
	verbPatch  = "patch"
	verbDelete = "delete"
)

const agentPageTasks = 20

func (s *Server) loadAgent(c *fiber.Ctx) (*agentData, error) {
	w, a, ctx := who(c), api(c), c.UserContext()
	id := c.Params("id")
	ag, err := a.Agent(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &agentData{Agent: ag}
	_ = json.Unmarshal(ag.Manifest, &d.Manifest)
	d.Fields = schemaFields(d.Manifest.Spec.ConfigSchema, ag.Config, true)
	r := d.Manifest.Spec.Resources
	d.CPU, d.Memory = r.CPU, r.Memory
	if r.PIDs > 0 {
		d.PIDs = strconv.Itoa(r.PIDs)
	}
	var wg sync.WaitGroup
	if can(w, actTasksRead) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := a.Tasks(ctx, id, agentPageTasks)
			fill(&d.Tasks, l.Tasks, err)
		}()
	} else {
		d.Tasks.Hidden = true
	}
	if can(w, actAgentsLogs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := a.AgentLogs(ctx, id, apitype.LogTailDefault)
			fill(&d.Logs, strings.ToValidUTF8(string(b), "\uFFFD"), err)
		}()
	} else {
		d.Logs.Hidden = true
	}
	wg.Wait()
	return d, nil
}

var verbDone = map[string]string{
	apiclient.ActionDisable: "disabled", apiclient.ActionEnable: "enabled", apiclient.ActionRestart: "restarted",
}

var agentNotices = map[string]string{
	"deployed":  "The agent is deployed. Its state below follows it live.",
	"patched":   "The change is saved; the agent is recreated with it.",
	"disabled":  "The agent is disabled: it is stopped and stays stopped.",
	"enabled":   "The agent is enabled: omertad starts it.",
	"restarted": "The agent is restarting.",
}

func (s *Server) agentPage(c *fiber.Ctx) error {
	d, err := s.loadAgent(c)
	if err != nil {
		return s.backendError(c, err)
	}
	return s.renderAgent(c, fiber.StatusOK, d, agentNotices[c.Query("done")], "")
}

func (s *Server) renderAgent(c *fiber.Ctx, status int, d *agentData, notice, msg string) error {
	w := who(c)
	return s.render(c, status, "agent", &page{Title: "Agent " + d.Agent.ID, Nav: "agents", Who: w, CSRF: w.CSRFToken,
		Live: "agent", LiveID: d.Agent.ID, Notice: notice, Error: msg, D: d})
}

// agentSubmit takes one of the agent page's actions.
func (s *Server) agentSubmit(c *fiber.Ctx) error {
	w, a, ctx := who(c), api(c), c.UserContext()
	id := c.Params("id")
	if !can(w, actAgentsWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not change agents.")
	}
	var err error
	verb := c.FormValue("action")
	switch verb {
	case apiclient.ActionDisable, apiclient.ActionEnable, apiclient.ActionRestart:
		_, err = a.AgentAction(ctx, id, verb)
	case verbDelete:
		if err = a.DeleteAgent(ctx, id, c.FormValue("purge") == "on"); err == nil {
			return c.Redirect("/agents?done=deleted", fiber.StatusSeeOther)
		}
	case verbPatch:
		return s.patchSubmit(c)
	default:
		return s.errorPage(c, fiber.StatusBadRequest, "Unknown action; use the buttons on the agent's page.")
	}
	if err != nil {
		if statusOf(err) == http.StatusUnauthorized || statusOf(err) == http.StatusNotFound {
			return s.backendError(c, err)
		}
		d, lerr := s.loadAgent(c)
		if lerr != nil {
			return s.backendError(c, lerr)
		}
		st, msg := explain(err)
		return s.renderAgent(c, st, d, "", msg)
	}
	return c.Redirect("/agents/"+url.PathEscape(id)+"?done="+verbDone[verb], fiber.StatusSeeOther)
}

func (s *Server) patchSubmit(c *fiber.Ctx) error {
	w := who(c)
	d, err := s.loadAgent(c)
	if err != nil {
		return s.backendError(c, err)
	}
	config, secrets, local := readForm(d.Fields, formGetter(c), true)
	was := *d
	d.CPU, d.Memory, d.PIDs = trimTo(c.FormValue("cpu"), 32), trimTo(c.FormValue("memory"), 32), trimTo(c.FormValue("pids"), 12)
	req := apitype.AgentPatch{Config: config}
	if len(secrets) > 0 {
		if !can(w, actSecretsWrite) {
			return s.renderAgent(c, fiber.StatusForbidden, d, "", "Your role may not set secrets.")
		}
		req.Secrets = secrets
	}
	// Only what was changed is sent: a patch replaces the fields it sets.
	res := &apitype.Resources{}
	if d.CPU != was.CPU {
		res.CPU = d.CPU
	}
	if d.Memory != was.Memory {
		res.Memory = d.Memory
	}
	if d.PIDs != "" && d.PIDs != was.PIDs {
		n, perr := strconv.Atoi(d.PIDs)
		if perr != nil || n < 1 {
			local["pids"] = "is not a positive whole number"
		}
		res.PIDs = n
	}
	if len(local) > 0 {
		d.Problems = attachProblems(d.Fields, local, nil)
		return s.renderAgent(c, fiber.StatusBadRequest, d, "", "Some fields need attention; see the notes beside them.")
	}
	if *res != (apitype.Resources{}) {
		req.Resources = res
	}
	if _, err := api(c).PatchAgent(c.UserContext(), d.Agent.ID, req); err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		d.Problems = attachProblems(d.Fields, nil, problemsOf(err))
		return s.renderAgent(c, st, d, "", msg)
	}
	return c.Redirect("/agents/"+url.PathEscape(d.Agent.ID)+"?done=patched", fiber.StatusSeeOther)
}

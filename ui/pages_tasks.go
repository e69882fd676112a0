package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

type tasksData struct {
	Agents  part[[]apitype.AgentSummary]
	Agent   string
	Tasks   part[[]apitype.Task]
	Task    part[apitype.Task]
	TaskID  string
	Input   string
	Timeout string
	// Final: the watched task has ended; the page need not follow it.
	Final bool
}

const tasksPageTasks = 50

func (s *Server) tasksPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actTasksRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read tasks.")
	}
	d := &tasksData{Agent: trimTo(c.Query("agent"), maxParam), TaskID: trimTo(c.Query("task"), maxParam), Input: "{}"}
	s.loadTasks(c, d)
	return s.renderTasks(c, fiber.StatusOK, d, "")
}

func (s *Server) renderTasks(c *fiber.Ctx, status int, d *tasksData, msg string) error {
	w := who(c)
	p := &page{Title: "Tasks", Nav: "tasks", Who: w, CSRF: w.CSRFToken, Error: msg, D: d}
	if d.TaskID != "" && !d.Final {
		p.Live, p.LiveID = "task", d.TaskID
	}
	return s.render(c, status, "tasks", p)
}

// loadTasks fills the agents to choose from, the chosen agent's recent
// tasks and the watched task, each call on its own.
func (s *Server) loadTasks(c *fiber.Ctx, d *tasksData) {
	a, ctx := api(c), c.UserContext()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l, err := a.Agents(ctx)
		fill(&d.Agents, l.Agents, err)
	}()
	if d.Agent != "" && validParam(d.Agent) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := a.Tasks(ctx, d.Agent, tasksPageTasks)
			fill(&d.Tasks, l.Tasks, err)
		}()
	}
	if d.TaskID != "" && validParam(d.TaskID) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := a.Task(ctx, d.TaskID)
			fill(&d.Task, t, err)
			d.Final = err == nil && apitype.TaskFinal(t.State)
		}()
	}
	wg.Wait()
	d.Tasks.V = withWatched(d.Tasks.V, d.Task)
}

// withWatched puts the watched task, read by a call of its own, in the
// list in place of its row when it is further along: the two calls run
// side by side, and a list read first must not show RUNNING beside the
// result of a task that has ended. A task's state only moves forward.
func withWatched(list []apitype.Task, watched part[apitype.Task]) []apitype.Task {
	if watched.Err != "" || watched.Missing || watched.V.ID == "" {
		return list
	}
	for i := range list {
		if list[i].ID == watched.V.ID && taskStage(watched.V.State) >= taskStage(list[i].State) {
			list[i] = watched.V
		}
	}
	return list
}

// taskStage orders a task's states: pending, running, ended.
func taskStage(state string) int {
	switch {
	case apitype.TaskFinal(state):
		return 2
	case state == apitype.TaskRunning:
		return 1
	}
	return 0
}

func (s *Server) taskSubmit(c *fiber.Ctx) error {
	return s.submitTask(c, trimTo(c.FormValue("agent"), maxParam))
}

func (s *Server) agentTaskSubmit(c *fiber.Ctx) error {
	return s.submitTask(c, c.Params("id"))
}

// maxTaskTimeout bounds the timeout field before omertad sees it.
const maxTaskTimeout = 24 * time.Hour

func (s *Server) submitTask(c *fiber.Ctx, agent string) error {
	w := who(c)
	d := &tasksData{Agent: agent, Input: c.FormValue("input"), Timeout: trimTo(c.FormValue("timeout"), 32)}
	again := func(status int, msg string) error {
		s.loadTasks(c, d)
		return s.renderTasks(c, status, d, msg)
	}
	if !can(w, actTasksWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not run tasks.")
	}
	if !validParam(agent) {
		return again(fiber.StatusBadRequest, "Choose the agent that runs the task.")
	}
	input := strings.TrimSpace(d.Input)
	if input == "" {
		input = "{}"
	}
	if !json.Valid([]byte(input)) {
		return again(fiber.StatusBadRequest, "The input is not valid JSON; a task reads one JSON value, e.g. {\"text\": \"…\"}.")
	}
	if d.Timeout != "" {
		if t, err := time.ParseDuration(d.Timeout); err != nil || t <= 0 || t > maxTaskTimeout {
			return again(fiber.StatusBadRequest, "The timeout is a duration such as 30s or 5m, at most 24h.")
		}
	}
	t, err := api(c).RunTask(c.UserContext(), agent, apitype.TaskCreate{Input: json.RawMessage(input), Timeout: d.Timeout}, 0)
	if err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		return again(st, msg)
	}
	return c.Redirect("/tasks?agent="+url.QueryEscape(agent)+"&task="+url.QueryEscape(t.ID), fiber.StatusSeeOther)
}

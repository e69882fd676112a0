package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/probe"
)

// ProbeQueries is what the probe routes read; *probe.Monitor is one.
type ProbeQueries interface {
	Current(ctx context.Context) (probe.Current, error)
	Drift(ctx context.Context, limit int) ([]probe.StoredDrift, error)
}

// probeRoutes serves GET /probe (the latest probe and its verdict) and GET
// /probe/drift (drift events, newest first, ?limit= up to 1000).
func (s *Server) probeRoutes(r fiber.Router) {
	r.Get("/probe", s.getProbe)
	r.Get("/probe/drift", s.getDrift)
}

// getProbe answers GET /probe. A *probe.Monitor's answer is a function of
// the database (the latest probe and the baseline, judged by a matrix and
// a profile fixed when it was made), so it is kept until the database
// changes: making it decodes two stored probes, and the dashboard asks on
// every load.
func (s *Server) getProbe(c *fiber.Ctx) error {
	ctx := c.UserContext()
	build := func() ([]byte, error) { return s.probeJSON(ctx) }
	_, pure := s.deps.Probe.(*probe.Monitor)
	b, err := s.fromDB(ctx, pure, &s.probeAnswer, build)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// probeJSON is GET /probe's answer, made afresh.
func (s *Server) probeJSON(ctx context.Context) ([]byte, error) {
	cur, err := s.deps.Probe.Current(ctx)
	if errors.Is(err, probe.ErrNoProbe) {
		return nil, fiber.NewError(fiber.StatusNotFound, err.Error())
	}
	if err != nil {
		return nil, err
	}
	res, err := json.Marshal(cur.Probe.Result)
	if err != nil {
		return nil, fmt.Errorf("encoding probe %d: %w", cur.Probe.ID, err)
	}
	return json.Marshal(apitype.ProbeView{
		ProbeID: cur.Probe.ID, At: cur.Probe.At, BaselineID: cur.BaselineID,
		Verdict: verdictView(cur.Verdict), Result: res,
	})
}

func verdictView(v probe.Verdict) apitype.Verdict {
	out := apitype.Verdict{Profile: string(v.Profile), Status: string(v.Status), Checks: make([]apitype.Check, 0, len(v.Checks))}
	for _, c := range v.Checks {
		out.Checks = append(out.Checks, apitype.Check{
			ID: c.ID, Status: string(c.Status), Reason: c.Reason, Measured: c.Measured, Required: c.Required,
		})
	}
	return out
}

func (s *Server) getDrift(c *fiber.Ctx) error {
	limit := apitype.DriftLimitDefault
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > apitype.MaxListLimit {
			return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit: %q is not a number from 1 to %d", v, apitype.MaxListLimit))
		}
		limit = n
	}
	ev, err := s.deps.Probe.Drift(c.UserContext(), limit)
	if err != nil {
		return err
	}
	out := apitype.DriftView{Events: make([]apitype.DriftEvent, 0, len(ev))}
	for _, e := range ev {
		out.Events = append(out.Events, driftView(e))
	}
	return c.JSON(out)
}

func driftView(e probe.StoredDrift) apitype.DriftEvent {
	return apitype.DriftEvent{
		ID: e.ID, At: e.At, ProbeID: e.ProbeID, BaselineID: e.BaselineID,
		Kind: e.Kind, Subject: e.Subject, Before: e.Before, After: e.After, Message: e.Message,
	}
}

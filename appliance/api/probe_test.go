package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/probe"
)

type fakeProbe struct {
	cur       probe.Current
	err       error
	drift     []probe.StoredDrift
	gotLimits []int
}

func (f *fakeProbe) Current(context.Context) (probe.Current, error) { return f.cur, f.err }

func (f *fakeProbe) Drift(_ context.Context, limit int) ([]probe.StoredDrift, error) {
	f.gotLimits = append(f.gotLimits, limit)
	return f.drift, nil
}

var at = time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

func sampleVerdict() probe.Verdict {
	return probe.Verdict{Profile: config.ProfilePro, Status: probe.StatusWarn, Checks: []probe.Check{
		{ID: "gpu.count", Status: probe.StatusPass, Reason: "8 GPUs", Measured: "8", Required: ">= 1"},
		{ID: "memory", Status: probe.StatusWarn, Reason: "less than recommended", Measured: "64 GiB", Required: ">= 128 GiB"},
	}}
}

func sampleDrift() probe.StoredDrift {
	return probe.StoredDrift{ID: 7, At: at, ProbeID: 3, BaselineID: 1, DriftEvent: probe.DriftEvent{
		Kind: "gpu.lost", Subject: "GPU 3", Before: "present", After: "absent", Message: "GPU 3 is gone"}}
}

func TestProbeRoutes(t *testing.T) {
	ctx := context.Background()
	if _, err := serve(t, Deps{}).c.Probe(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("Probe without a probe handle = %v, want 404 (route not served)", err)
	}
	var ae *apiclient.Error
	if _, err := serve(t, Deps{Probe: &fakeProbe{err: fmt.Errorf("reading: %w", probe.ErrNoProbe)}}).c.Probe(ctx); !errors.As(err, &ae) ||
		ae.Status != http.StatusNotFound || ae.Message != "reading: no probe stored yet" {
		t.Errorf("Probe before the first probe = %v, want 404 naming ErrNoProbe", err)
	}

	f := &fakeProbe{
		cur: probe.Current{
			Probe:      &probe.Stored{ID: 4, At: at, Result: &probe.Result{SchemaVersion: probe.SchemaVersion, Time: at}},
			BaselineID: 1, Verdict: sampleVerdict(),
		},
		drift: []probe.StoredDrift{sampleDrift()},
	}
	s := serve(t, Deps{Probe: f})
	pv, err := s.c.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pv.ProbeID != 4 || pv.BaselineID != 1 || !pv.At.Equal(at) || pv.Verdict.Status != "warn" || len(pv.Verdict.Checks) != 2 {
		t.Errorf("probe view = %+v", pv)
	}
	var res probe.Result
	if err := json.Unmarshal(pv.Result, &res); err != nil || res.SchemaVersion != probe.SchemaVersion {
		t.Errorf("result = %s, %v", pv.Result, err)
	}

	dv, err := s.c.Drift(ctx, 0)
	if err != nil || len(dv.Events) != 1 || dv.Events[0].Kind != "gpu.lost" || dv.Events[0].ProbeID != 3 {
		t.Errorf("drift view = %+v, %v", dv, err)
	}
	if _, err := s.c.Drift(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.gotLimits) != "[100 2]" {
		t.Errorf("limits passed to Drift = %v, want [100 2]", f.gotLimits)
	}
	for _, q := range []string{"0", "1001", "x"} {
		if code, body := raw(t, s.sock, "GET /api/v1/probe/drift?limit="+q+" HTTP/1.1\r\nHost: x\r\n\r\n"); code != 400 || !strings.Contains(body, "is not a number from 1 to 1000") {
			t.Errorf("?limit=%s = %d %s, want 400", q, code, body)
		}
	}
}

// TestProbeMirrors keeps apitype's copies of probe's types in step: the JSON
// the API sends from a converted value is the JSON of the original, and the
// mirror knows every field of the original's JSON.
func TestProbeMirrors(t *testing.T) {
	mirror := func(name string, orig, conv, into any) {
		ob, _ := json.Marshal(orig)
		cb, _ := json.Marshal(conv)
		if !bytes.Equal(ob, cb) {
			t.Errorf("%s: converted JSON differs:\n orig %s\n conv %s", name, ob, cb)
		}
		dec := json.NewDecoder(bytes.NewReader(ob))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s: apitype lacks a field of probe's JSON: %v", name, err)
		}
	}
	v := sampleVerdict()
	mirror("verdict", v, verdictView(v), &apitype.Verdict{})
	d := sampleDrift()
	mirror("drift", d, driftView(d), &apitype.DriftEvent{})
}

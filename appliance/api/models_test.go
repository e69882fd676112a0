package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

type fakeModels struct{ list apitype.ModelList }

func (f fakeModels) Models() apitype.ModelList { return f.list }

func sampleModels() fakeModels {
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	return fakeModels{apitype.ModelList{Gateway: true, CheckedAt: &at, Models: []apitype.ModelStatus{
		{Name: "local-echo", Backends: []string{"echo"}, Enabled: true, Code: "ok", Signed: true, KeyID: "0242DB770DE91C78"},
		{Name: "big", Backends: []string{"echo"}, Code: "insufficient-vram", Reason: "needs 80 GB (80000000000 bytes) of GPU memory; no GPU was found"},
	}}}
}

// TestModelsRoute: GET /models serves the models' verification to root
// and to every role that reads policies, and is documented; without the
// handle it is not served.
func TestModelsRoute(t *testing.T) {
	ctx := context.Background()
	s := serve(t, Deps{Models: sampleModels()})
	l, err := s.c.Models(ctx)
	if err != nil || !l.Gateway || len(l.Models) != 2 || !l.Models[0].Enabled || l.Models[1].Enabled || !strings.Contains(l.Models[1].Reason, "80 GB") {
		t.Fatalf("Models as root = %+v, %v", l, err)
	}
	if code, body := raw(t, s.sock, "GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 || !strings.Contains(body, `"/api/v1/models"`) {
		t.Errorf("the OpenAPI document lacks /api/v1/models: %d", code)
	}
	if _, err := serve(t, Deps{}).c.Models(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("Models without the handle = %v, want 404 (route not served)", err)
	}

	needRoot(t)
	e := newAuthEnv(t, func(_ *auth.Options, d *Deps) { d.Models = sampleModels() })
	admin := e.setup()
	for _, role := range []auth.Role{auth.RoleOperator, auth.RoleAuditor} {
		who := e.user(admin, string(role)+"1", role)
		a := e.other.do("GET", "/api/v1/models", who.read(), nil)
		if a.status != http.StatusOK {
			t.Errorf("GET /models as %s = %s", role, a)
		}
	}
	if a := e.other.do("GET", "/api/v1/models", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("GET /models without credentials = %s, want 401", a)
	}
}

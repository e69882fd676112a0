package ui

import (
	"net/http"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

func TestModelsPage(t *testing.T) {
	e := newEnv(t, Limits{})
	aud := e.signIn("carol", "auditor")
	resp, body := e.get("/models", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="models-none"`)
	wantNotContains(t, body, `data-testid="models-table"`)

	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	zero := 0.0
	e.fake.SetModels(apitype.ModelList{Gateway: true, CheckedAt: &at, Models: []apitype.ModelStatus{
		{Name: "local-echo", Backends: []string{"echo"}, Enabled: true, Code: "ok", Signed: true, KeyID: "83C3DC543D9B8D19",
			Registry: "/usr/share/omerta", Provider: "omertaos", Version: "0.1.0", VRAMGB: &zero},
		{Name: "big<b>", Backends: []string{"echo", "cloud"}, Code: "insufficient-vram",
			Reason: `model "big<b>" refused: needs 80 GB (80000000000 bytes) of GPU memory; no GPU was found`},
		{Name: "mine", Backends: []string{"echo"}, Enabled: true, Code: "unsigned", Warnings: []string{"model \"mine\" is not signed by a trusted key; allowed by the user profile"}},
	}})
	_, body = e.get("/models", &aud)
	wantContains(t, body, `data-testid="models-table"`, `data-model="local-echo"`, "signed, key <code>83C3DC543D9B8D19</code>",
		"vram_gb 0", `<span class="badge bad">refused</span>`, `data-testid="model-reason"`, "needs 80 GB", "echo, cloud",
		"big&lt;b&gt;", `data-testid="model-warning"`, "allowed by the user profile", "2026-12-02 04:00:00 UTC")
	wantNotContains(t, body, "big<b>")
	checkCSPClean(t, "models page", body)
	_, body = e.get("/", &aud)
	wantContains(t, body, `href="/models"`)
}

package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// TestGPURoutesWired: with Deps.GPU the routes are served behind the
// authorization table (root on the socket, and every role, as the probe
// is) and documented; without it they are not served.
func TestGPURoutesWired(t *testing.T) {
	lib := dgxH100(nil)
	dir, root := driverHost(t, lib)
	svc := gpuService(t, lib, dir, root)
	if _, err := svc.Allocator().Admit(gpu.Request{Agent: "tool", Count: 1, Mode: gpu.Exclusive}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := serve(t, Deps{GPU: svc})
	l, err := s.c.GPUs(ctx)
	if err != nil || len(l.GPUs) != 8 || len(l.GPUs[0].Holders) != 1 || l.GPUs[0].Holders[0].Agent != "tool" {
		t.Fatalf("GPUs as root = %+v, %v", l, err)
	}
	if g, err := s.c.GPU(ctx, l.GPUs[0].UUID); err != nil || g.UUID != l.GPUs[0].UUID {
		t.Errorf("GPU(%s) = %+v, %v", l.GPUs[0].UUID, g, err)
	}
	if _, err := s.c.GPU(ctx, "GPU-nope"); statusOf(err) != http.StatusNotFound {
		t.Errorf("GPU(GPU-nope) = %v, want 404", err)
	}
	if code, body := raw(t, s.sock, "GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 ||
		!strings.Contains(body, `"/api/v1/gpus/{uuid}"`) {
		t.Errorf("the OpenAPI document lacks the GPU routes: %d", code)
	}
	if _, err := serve(t, Deps{}).c.GPUs(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("GPUs without a GPU handle = %v, want 404 (route not served)", err)
	}

	needRoot(t)
	e := newAuthEnv(t, func(_ *auth.Options, d *Deps) { d.GPU = svc })
	admin := e.setup()
	for _, role := range []auth.Role{auth.RoleOperator, auth.RoleAuditor} {
		who := e.user(admin, string(role)+"1", role)
		a := e.other.do("GET", "/api/v1/gpus", who.read(), nil)
		var got apitype.GPUList
		if a.status != http.StatusOK {
			t.Errorf("GET /gpus as %s = %s", role, a)
			continue
		}
		a.decode(t, &got)
		if len(got.GPUs) != 8 {
			t.Errorf("GET /gpus as %s: %d GPUs", role, len(got.GPUs))
		}
	}
	if a := e.other.do("GET", "/api/v1/gpus", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("GET /gpus without credentials = %s, want 401", a)
	}
}

// wiredGPU is a GPU service for the wired API's tables (wiredEnv): one
// refreshed on a machine without NVIDIA's driver, which needs no device
// nodes.
func wiredGPU(t *testing.T) GPUService {
	t.Helper()
	lib := dgxH100(nil)
	lib.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	root, err := rootfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := gpu.NewService(gpu.ServiceConfig{Root: root, NVML: lib, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

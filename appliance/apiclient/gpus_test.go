package apiclient

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// GPUs and GPU call their routes, the UUID escaped as one path segment,
// and decode the answers; a 404 is an *Error with the server's message.
func TestGPUs(t *testing.T) {
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.EscapedPath() {
		case "/api/v1/gpus":
			w.Write([]byte(`{"available":true,"driver_version":"550.163.01","kernel_modules":"open","gpus":[` +
				`{"index":0,"uuid":"GPU-0","architecture":"hopper","memory_total_bytes":85899345920,"memory_used_bytes":1024,` +
				`"mig_enabled":false,"holders":[{"agent":"tool","mode":"exclusive","reserved_bytes":85899345920,"used_bytes":1024}]}]}`))
		case "/api/v1/gpus/GPU-0":
			w.Write([]byte(`{"index":0,"uuid":"GPU-0","architecture":"hopper","mig_enabled":false,"holders":[]}`))
		case "/api/v1/gpus/a%2Fb":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"GPU \"a/b\" not found"}`))
		default:
			http.Error(w, "unexpected path "+r.URL.EscapedPath(), http.StatusTeapot)
		}
	})
	c := New(sock)
	defer c.Close()
	ctx := context.Background()
	l, err := c.GPUs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Available || l.DriverVersion != "550.163.01" || len(l.GPUs) != 1 || l.GPUs[0].MemoryUsedBytes != 1024 ||
		len(l.GPUs[0].Holders) != 1 || l.GPUs[0].Holders[0].Agent != "tool" {
		t.Errorf("GPUs = %+v", l)
	}
	if v, err := c.GPU(ctx, "GPU-0"); err != nil || v.UUID != "GPU-0" || v.Architecture != "hopper" {
		t.Errorf("GPU(GPU-0) = %+v, %v", v, err)
	}
	var e *Error
	if _, err := c.GPU(ctx, "a/b"); !errors.As(err, &e) || e.Status != http.StatusNotFound || e.Message != `GPU "a/b" not found` {
		t.Errorf("GPU(a/b) = %v, want a 404 *Error with the server's message (the slash escaped, not a path)", err)
	}
}

package main

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/api"
)

// serveAPI serves omertad's API over deps on dir/api.sock until the test
// ends and returns the socket's path. dir must be short (a socket's path
// holds at most 108 bytes; t.TempDir's can be longer).
func serveAPI(t *testing.T, dir string, deps api.Deps) string {
	t.Helper()
	srv := api.New(deps)
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return sock
}

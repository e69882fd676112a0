package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this binary again as another uid, so that the
// API sees a real non-root peer through SO_PEERCRED.
func TestMain(m *testing.M) {
	if sock := os.Getenv("OMERTA_API_TEST_CLIENT"); sock != "" {
		os.Exit(runAsClient(sock, os.Getenv("OMERTA_API_TEST_REQUESTS")))
	}
	os.Exit(m.Run())
}

type clientRequest struct {
	Method, Path, Body string
}

// runAsClient sends each request on its own connection and prints the
// statuses and bodies as JSON.
func runAsClient(sock, reqs string) int {
	var rs []clientRequest
	if err := json.Unmarshal([]byte(reqs), &rs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var out []string
	for _, r := range rs {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			r.Method, r.Path, len(r.Body), r.Body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		conn.Close()
		out = append(out, fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))))
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// asUser runs the requests as uid and gid 65534 (nobody).
func asUser(t *testing.T, sock string, reqs []clientRequest) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	// The test binary's directory is private to root; nobody runs a copy.
	dir, err := os.MkdirTemp("", "api-client")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o666)
	b, _ := json.Marshal(reqs)
	cmd := exec.Command(bin)
	cmd.Env = []string{"OMERTA_API_TEST_CLIENT=" + sock, "OMERTA_API_TEST_REQUESTS=" + string(b)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("client as nobody: %v\n%s", err, stderr)
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return res
}

// TestAgentRoutesNeedACaller: a peer other than root that presents no
// session or token is refused (401) every agents route, reads included,
// and nothing it asked for happens; root on the socket is served (the
// other tests). What each role may do is authz.go's table, tested there.
func TestAgentRoutesNeedACaller(t *testing.T) {
	e := newAgentsEnv(t)
	e.deploy(t, "tool")
	e.waitState(t, "tool", "running")
	task, err := e.c.RunTask(t.Context(), "tool", taskCreate(`{}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []clientRequest{
		{"POST", "/api/v1/agents", `{"entry":"tool","id":"evil"}`},
		{"PATCH", "/api/v1/agents/tool", `{"config":{"mode":"slow"}}`},
		{"DELETE", "/api/v1/agents/tool?purge=true", ""},
		{"POST", "/api/v1/agents/tool/disable", "{}"},
		{"POST", "/api/v1/agents/tool/enable", "{}"},
		{"POST", "/api/v1/agents/tool/restart", "{}"},
		{"POST", "/api/v1/agents/tool/tasks", `{"input":{}}`},
		{"POST", "/api/v1/tasks/" + task.ID + "/cancel", "{}"},
		{"POST", "/api/v1/catalog", `{"name":"x.yaml","document":"{}"}`},
		{"POST", "/api/v1/images/import", `{"path":"/etc/shadow"}`},
		{"GET", "/api/v1/agents", ""}, {"GET", "/api/v1/agents/tool", ""}, {"GET", "/api/v1/agents/tool/logs", ""},
		{"GET", "/api/v1/agents/tool/tasks", ""}, {"GET", "/api/v1/tasks/" + task.ID, ""}, {"GET", "/api/v1/catalog", ""},
		{"GET", "/api/v1/catalog/tool", ""}, {"GET", "/api/v1/images", ""}, {"GET", "/api/v1/events", ""}, {"GET", "/metrics", ""},
	}
	res := asUser(t, e.sock, reqs)
	for i, r := range reqs {
		if !strings.HasPrefix(res[i], "401 ") {
			t.Errorf("%s %s as nobody = %.200s, want 401", r.Method, r.Path, res[i])
		}
	}
	// Nothing the refused calls asked for happened.
	if a, err := e.c.Agent(t.Context(), "tool"); err != nil || a.Desired != "enabled" || a.Generation != 1 {
		t.Errorf("agent after refused calls = %+v, %v", a, err)
	}
	if _, err := e.c.Agent(t.Context(), "evil"); statusOf(err) != 404 {
		t.Errorf("refused deploy left an agent: %v", err)
	}
	if len(e.images.paths) != 0 {
		t.Errorf("refused import opened %q", e.images.paths)
	}
}
